// blkclone serve: run a clone in the foreground, optionally exported over NBD
// and FUSE, until SIGTERM or SIGINT (or until its FUSE directory is unmounted).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "control_server.hpp"
#include "serve_exports.hpp"
#include "session.hpp"
#include "signals.hpp"

namespace blkclone::cli {
namespace {

// How often serve looks whether its FUSE directory was unmounted from outside.
constexpr std::chrono::milliseconds kUnmountPoll{200};

// Waits for SIGTERM or SIGINT, or for the FUSE directory to be unmounted; says which.
std::string WaitForStop(TerminationSignals& signals, const ServeExports& exports) {
  for (;;) {
    if (exports.Unmounted()) return "unmount";
    const int signal = signals.Wait(kUnmountPoll);
    if (signal != 0) return signal == SIGINT ? "SIGINT" : "SIGTERM";
  }
}

}  // namespace

absl::StatusOr<int> RunServe(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(ServeExports exports, ServeExports::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  TerminationSignals signals;  // before the session starts threads
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "serve"));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                            Session::Open(record, {.backend = backend,
                                                   .hydrator = HydratorDefaults(record.table),
                                                   .log_prefix = "blkclone serve: "}));
  const std::filesystem::path socket = dir.File(record.name, "sock");
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<ControlServer> server,
                            ControlServer::Start(socket, *session));
  BLKCLONE_RETURN_IF_ERROR(exports.Start(session->clone()));
  std::printf("serving clone %s (pid %d): control socket %s%s; SIGTERM or SIGINT stops it\n",
              record.name.c_str(), static_cast<int>(::getpid()), socket.c_str(),
              exports.Describe().c_str());
  std::fflush(stdout);
  const std::string cause = WaitForStop(signals, exports);
  BLKCLONE_RETURN_IF_ERROR(exports.Stop());
  server.reset();
  BLKCLONE_RETURN_IF_ERROR(session->Close());
  const HydrationProgress progress = session->progress();
  std::printf("stopped clone %s on %s: %s hydrated (%llu of %llu regions), metadata committed\n",
              record.name.c_str(), cause.c_str(),
              HumanPercent(progress.hydrated_bytes, progress.total_bytes).c_str(),
              static_cast<unsigned long long>(progress.hydrated_regions),
              static_cast<unsigned long long>(progress.total_regions));
  return kExitOk;
}

}  // namespace blkclone::cli

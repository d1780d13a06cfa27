// blkclone serve: run a clone in the foreground until SIGTERM or SIGINT.
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "control_server.hpp"
#include "session.hpp"
#include "signals.hpp"

namespace blkclone::cli {

absl::StatusOr<int> RunServe(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  const StateDir dir = StateDir::FromArgs(args);
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
  std::printf("serving clone %s (pid %d): control socket %s; SIGTERM or SIGINT stops it\n",
              record.name.c_str(), static_cast<int>(::getpid()), socket.c_str());
  std::fflush(stdout);
  int signal = 0;
  while (signal == 0) signal = signals.Wait(std::chrono::hours(1));
  server.reset();
  BLKCLONE_RETURN_IF_ERROR(session->Close());
  const HydrationProgress progress = session->progress();
  std::printf("stopped clone %s on %s: %s hydrated (%llu of %llu regions), metadata committed\n",
              record.name.c_str(), signal == SIGINT ? "SIGINT" : "SIGTERM",
              HumanPercent(progress.hydrated_bytes, progress.total_bytes).c_str(),
              static_cast<unsigned long long>(progress.hydrated_regions),
              static_cast<unsigned long long>(progress.total_regions));
  return kExitOk;
}

}  // namespace blkclone::cli

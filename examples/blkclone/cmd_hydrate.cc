// blkclone hydrate: copy every unhydrated region now, showing progress; stop
// cleanly on SIGINT or SIGTERM and resume on the next run.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "control_server.hpp"
#include "progress.hpp"
#include "session.hpp"
#include "signals.hpp"

namespace blkclone::cli {
namespace {

// hydrate's own pace, whatever the table says: enough copies at once to keep
// a fast device busy (the table's core arguments pace serve).
constexpr uint64_t kThreshold = 64;
constexpr uint64_t kBatchSize = 16;

absl::StatusOr<SessionOptions> Options(const ParsedArgs& args, const CloneRecord& record) {
  SessionOptions options{.hydrator = HydratorDefaults(record.table),
                         .log_prefix = "blkclone hydrate: ",
                         .events_end_command = true};
  BLKCLONE_ASSIGN_OR_RETURN(options.backend, BackendFromArgs(args));
  options.hydrator.start_enabled = true;
  // A threshold of 0 would never finish.
  BLKCLONE_ASSIGN_OR_RETURN(options.hydrator.threshold,
                            args.Number("--threshold", kThreshold, 1, UINT32_MAX));
  BLKCLONE_ASSIGN_OR_RETURN(options.hydrator.batch_size,
                            args.Number("--batch-size", kBatchSize, 1, UINT32_MAX));
  if (std::optional<std::string> rate = args.Get("--rate-limit")) {
    BLKCLONE_ASSIGN_OR_RETURN(options.rate_limit, ParseSize("--rate-limit", *rate));
  }
  options.detect_zeroes = !args.Has("--no-detect-zeroes");
  return options;
}

// "  (data 12.0 MiB of 512 MiB, holes 1.0 GiB of 7.5 GiB)", once known to
// have holes.
std::string DataAndHoles(const HydrationProgress& progress) {
  if (!progress.data_known || progress.hole_bytes == 0) return "";
  return absl::StrCat("  (data ", HumanBytes(progress.hydrated_data_bytes), " of ",
                      HumanBytes(progress.data_bytes), ", holes ",
                      HumanBytes(progress.hydrated_hole_bytes), " of ",
                      HumanBytes(progress.hole_bytes), ")");
}

// The one line a hydration that cannot go on ends with.
absl::Status Blocked(const std::string& name, const absl::Status& why) {
  if (absl::IsUnavailable(why))
    return absl::UnavailableError(absl::StrCat("clone ", name, ": ", why.message(),
                                               "; run blkclone hydrate ", name,
                                               " again to resume"));
  return absl::Status(why.code(), absl::StrCat("clone ", name, ": ", why.message()));
}

}  // namespace

absl::StatusOr<int> RunHydrate(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  BLKCLONE_ASSIGN_OR_RETURN(SessionOptions options, Options(args, record));
  TerminationSignals signals;  // before the session starts threads
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "hydrate"));
  const auto start = std::chrono::steady_clock::now();
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Open(record, options));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<ControlServer> server,
                            ControlServer::Start(dir.File(record.name, "sock"), *session));
  Progress bar(absl::StrCat("hydrating ", record.name));
  int signal = 0;
  const absl::Status hydrated =
      session->clone_session().HydrateAll([&](const HydrationProgress& now) {
        bar.Update(now.hydrated_bytes, now.total_bytes, now.bytes_per_second, now.eta_seconds,
                   DataAndHoles(now));
        signal = signals.Wait(std::chrono::milliseconds(0));
        return signal == 0;
      });
  server.reset();
  const absl::Status closed = session->Close();
  const HydrationProgress progress = session->progress();
  bar.Finish(progress.hydrated_bytes, progress.total_bytes, DataAndHoles(progress));
  if (!hydrated.ok() && !absl::IsCancelled(hydrated)) return Blocked(record.name, hydrated);
  BLKCLONE_RETURN_IF_ERROR(closed);
  if (progress.hydrated_regions < progress.total_regions) {
    std::printf(
        "interrupted by %s: clone %s is %s hydrated (%s of %s), metadata committed; run "
        "blkclone hydrate %s to resume\n",
        signal == SIGINT ? "SIGINT" : "SIGTERM", record.name.c_str(),
        HumanPercent(progress.hydrated_bytes, progress.total_bytes).c_str(),
        HumanBytes(progress.hydrated_bytes).c_str(), HumanBytes(progress.total_bytes).c_str(),
        record.name.c_str());
    return kExitOk;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t copied = session->clone().copied_bytes();
  std::printf(
      "hydrated clone %s: %s of data copied and %s of holes zeroed in %.1f s (%s/s of data); "
      "all %llu regions hydrated\n",
      record.name.c_str(), HumanBytes(copied).c_str(),
      HumanBytes(session->clone().zeroed_bytes()).c_str(), seconds,
      HumanBytes(static_cast<uint64_t>(copied / std::max(seconds, 0.001))).c_str(),
      static_cast<unsigned long long>(progress.total_regions));
  return kExitOk;
}

}  // namespace blkclone::cli

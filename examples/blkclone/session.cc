// Opening and closing a clone for the CLI's commands.
#include "session.hpp"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/status.hpp"
#include "commands.hpp"

namespace blkclone::cli {

// Reports what an operator must hear about on stderr, one line each; or, for
// a command that these events end, keeps the mode change's cause for it.
class Session::EventLog final : public CloneEvents {
 public:
  EventLog(std::string prefix, std::string name, bool events_end_command)
      : prefix_(std::move(prefix)), name_(std::move(name)), quiet_(events_end_command) {}

  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    if (quiet_) {
      internal::MutexLock lock(mu_);
      if (mode_cause_.ok()) mode_cause_ = cause;
      return;
    }
    Log(absl::StrCat("metadata mode is now ", ModeName(mode), ": ", cause.message()));
  }
  void OnHydrationStopped(uint64_t region, const absl::Status& cause) override {
    if (quiet_) return;  // HydrationProgress::stop_reason has it
    Log(absl::StrCat("background hydration stopped at region ", region, ": ", cause.message(),
                     " (blkclone message ", name_, " restart_hydration resumes it)"));
  }
  absl::Status mode_cause() const {
    internal::MutexLock lock(mu_);
    return mode_cause_;
  }

 private:
  void Log(const std::string& line) {
    std::fprintf(stderr, "%sclone %s: %s\n", prefix_.c_str(), name_.c_str(), line.c_str());
  }
  const std::string prefix_;
  const std::string name_;
  const bool quiet_;
  mutable internal::Mutex mu_;
  absl::Status mode_cause_ ABSL_GUARDED_BY(mu_);
};

HydratorOptions HydratorDefaults(const CloneTable& table) {
  return HydratorOptions{.start_enabled = !table.no_hydration,
                         .threshold = table.hydration_threshold,
                         .batch_size = table.hydration_batch_size};
}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const CloneRecord& record,
                                                       const SessionOptions& options) {
  const CloneTable& table = record.table;
  CloneDevices devices;
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, options.backend, Access::kReadWrite, CloneParts::kAll, devices));
  if (devices.metadata->finished())
    return absl::FailedPreconditionError(absl::StrCat("clone ", record.name, ": finished; use ",
                                                      table.destination_device, " directly"));
  auto session = std::unique_ptr<Session>(new Session(record, options, std::move(devices)));
  absl::StatusOr<std::unique_ptr<CliClone>> clone = CliClone::Create(
      session->source_, session->dest_, session->copier_, *session->metadata_,
      {.discard_passdown = !table.no_discard_passdown, .events = session->events_.get()});
  if (!clone.ok()) return AsFailure(clone.status());
  session->clone_ = *std::move(clone);
  const CloneGeometry& geometry = session->clone_->geometry();
  session->hydrated_bytes_at_open_ =
      std::min(session->metadata_->map().CountSet() * geometry.region_size, geometry.source_size);
  session->hydrator_ =
      std::make_unique<CliHydrator>(*session->clone_, options.hydrator, session->events_.get());
  return session;
}

// Copies in flight cap the hydration rate from a slow source (threshold x
// region / latency needs as many at once as the threshold allows), so there
// are as many as the largest useful threshold; 256 KiB buffers keep that to
// 16 MiB.
constexpr BufferedCopierOptions kCopierOptions = {.chunk_size = 256 << 10, .max_in_flight = 64};

Session::Session(CloneRecord record, const SessionOptions& options, CloneDevices devices)
    : record_(std::move(record)),
      claims_(std::move(devices.claims)),
      source_(*std::move(devices.source)),
      dest_(*std::move(devices.destination)),
      metadata_(std::move(devices.metadata)),
      limiter_(options.rate_limit),
      buffered_(source_, dest_, kCopierOptions),
      copier_(buffered_, limiter_),
      events_(std::make_unique<EventLog>(options.log_prefix, record_.name,
                                         options.events_end_command)) {}

Session::~Session() { (void)Close(); }

absl::Status Session::ModeCause() const { return events_->mode_cause(); }

absl::Status Session::Close() {
  if (clone_ == nullptr) return absl::OkStatus();  // Open failed before the clone was made
  hydrator_->Disable();
  limiter_.SetRate(0);
  return clone_->Close();
}

}  // namespace blkclone::cli

// Opening and closing a clone for the CLI's commands.
#include "session.hpp"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "recorded_metadata.hpp"

namespace blkclone::cli {

// Reports what an operator must hear about on stderr, one line each.
class Session::EventLog final : public CloneEvents {
 public:
  EventLog(std::string prefix, std::string name)
      : prefix_(std::move(prefix)), name_(std::move(name)) {}

  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    Log(absl::StrCat("metadata mode is now ", ModeName(mode), ": ", cause.message()));
  }
  void OnHydrationStopped(uint64_t region, const absl::Status& cause) override {
    Log(absl::StrCat("background hydration stopped at region ", region, ": ", cause.message(),
                     " (blkclone message ", name_, " restart_hydration resumes it)"));
  }

 private:
  void Log(const std::string& line) {
    std::fprintf(stderr, "%sclone %s: %s\n", prefix_.c_str(), name_.c_str(), line.c_str());
  }
  const std::string prefix_;
  const std::string name_;
};

HydratorOptions HydratorDefaults(const CloneTable& table) {
  return HydratorOptions{.start_enabled = !table.no_hydration,
                         .threshold = table.hydration_threshold,
                         .batch_size = table.hydration_batch_size};
}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const CloneRecord& record,
                                                       const SessionOptions& options) {
  const CloneTable& table = record.table;
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<PersistentMetadata> metadata,
                            OpenRecordedMetadata(record, options.backend, Access::kReadWrite));
  if (metadata->finished())
    return absl::FailedPreconditionError(absl::StrCat("clone ", record.name, ": finished; use ",
                                                      table.destination_device, " directly"));
  BLKCLONE_ASSIGN_OR_RETURN(AnyBlockDevice source, OpenDevice("source", table.source_device,
                                                              options.backend, Access::kReadOnly));
  BLKCLONE_ASSIGN_OR_RETURN(AnyBlockDevice dest, OpenDevice("destination", table.destination_device,
                                                            options.backend, Access::kReadWrite));
  BLKCLONE_RETURN_IF_ERROR(CheckTableLength(table, source.info().size));
  auto session = std::unique_ptr<Session>(
      new Session(record, options, std::move(source), std::move(dest), std::move(metadata)));
  BLKCLONE_ASSIGN_OR_RETURN(
      session->clone_,
      CliClone::Create(
          session->source_, session->dest_, session->copier_, *session->metadata_,
          {.discard_passdown = !table.no_discard_passdown, .events = session->events_.get()}));
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

Session::Session(CloneRecord record, const SessionOptions& options, AnyBlockDevice source,
                 AnyBlockDevice dest, std::unique_ptr<PersistentMetadata> metadata)
    : record_(std::move(record)),
      source_(std::move(source)),
      dest_(std::move(dest)),
      metadata_(std::move(metadata)),
      limiter_(options.rate_limit),
      buffered_(source_, dest_, kCopierOptions),
      copier_(buffered_, limiter_),
      events_(std::make_unique<EventLog>(options.log_prefix, record_.name)) {}

Session::~Session() { (void)Close(); }

absl::Status Session::Close() {
  hydrator_->Disable();
  limiter_.SetRate(0);
  return clone_->Close();
}

}  // namespace blkclone::cli

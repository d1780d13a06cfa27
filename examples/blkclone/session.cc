// Opening a recorded clone for the CLI's commands.
#include "session.hpp"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "commands.hpp"

namespace blkclone::cli {

// Reports what an operator must hear about on stderr, one line each; mode
// changes and stopped hydration not when the command ends on them and says
// why itself.
class Session::EventLog final : public CloneEvents {
 public:
  EventLog(std::string prefix, std::string name, bool events_end_command)
      : prefix_(std::move(prefix)),
        name_(std::move(name)),
        events_end_command_(events_end_command) {}

  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    if (events_end_command_) return;
    Log(absl::StrCat("metadata mode is now ", ModeName(mode), ": ", cause.message()));
  }
  void OnHydrationStopped(uint64_t region, const absl::Status& cause) override {
    if (events_end_command_) return;
    Log(absl::StrCat("background hydration stopped at region ", region, ": ", cause.message(),
                     " (blkclone message ", name_, " restart_hydration resumes it)"));
  }
  void OnSourceAllocationUnknown(const absl::Status& cause) override {
    Log(absl::StrCat("the source cannot say where its holes are (", cause.message(),
                     "); copying all of it"));
  }

 private:
  void Log(const std::string& line) {
    std::fprintf(stderr, "%sclone %s: %s\n", prefix_.c_str(), name_.c_str(), line.c_str());
  }
  const std::string prefix_;
  const std::string name_;
  const bool events_end_command_;
};

HydratorOptions HydratorDefaults(const CloneTable& table) {
  return HydratorOptions{.start_enabled = !table.no_hydration,
                         .threshold = table.hydration_threshold,
                         .batch_size = table.hydration_batch_size};
}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const CloneRecord& record,
                                                       const SessionOptions& options) {
  CloneDevices devices;
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, options.backend, Access::kReadWrite, CloneParts::kAll, devices));
  if (devices.metadata->finished())
    return absl::FailedPreconditionError(absl::StrCat(
        "clone ", record.name, ": finished; use ", record.table.destination_device, " directly"));
  auto events =
      std::make_unique<EventLog>(options.log_prefix, record.name, options.events_end_command);
  BufferedCopierOptions buffered = kSessionBufferedCopier;
  buffered.detect_zeroes = options.detect_zeroes;
  auto session = std::unique_ptr<Session>(
      new Session(record, std::move(devices.claims), std::move(events)));
  absl::StatusOr<std::unique_ptr<CloneSession>> opened = CloneSession::Open(
      *std::move(devices.source), *std::move(devices.destination), std::move(devices.metadata),
      {.hydration = options.hydrator,
       .rate_limit = options.rate_limit,
       .discard_passdown = !record.table.no_discard_passdown,
       .copier =
           [&](AnyBlockDevice& source, AnyBlockDevice& destination) {
             return FastestCopier(
                 source, destination, buffered,
                 [prefix = options.log_prefix, name = record.name](const std::string& line) {
                   std::fprintf(stderr, "%sclone %s: %s\n", prefix.c_str(), name.c_str(),
                                line.c_str());
                 });
           },
       .events = session->events_.get()});
  if (!opened.ok()) return AsFailure(opened.status());
  session->session_ = *std::move(opened);
  return session;
}

Session::Session(CloneRecord record, std::vector<internal::UniqueFd> claims,
                 std::unique_ptr<EventLog> events)
    : record_(std::move(record)), claims_(std::move(claims)), events_(std::move(events)) {}

Session::~Session() = default;

}  // namespace blkclone::cli

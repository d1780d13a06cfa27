// Session: a recorded clone opened and running in this process: its devices,
// metadata, rate-limited copier, the engine and its hydrator.
//
// The engine is instantiated once, over AnyBlockDevice, so that the backend
// is a run-time choice; clone() is itself a BlockDevice, which is what an
// export needs to serve it.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto session, Session::Open(record, options));
//   BLKCLONE_RETURN_IF_ERROR(WriteAt(session->clone(), 0, data));
//   BLKCLONE_RETURN_IF_ERROR(session->Close());
//
// Threading: Status and Apply may run on any thread (the control socket's).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/control.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/paced_copier.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/rate_limiter.hpp"
#include "clone_devices.hpp"
#include "state.hpp"

namespace blkclone::cli {

using CliCopier = PacedCopier<BufferedCopier<AnyBlockDevice, AnyBlockDevice>>;
using CliClone = Clone<AnyBlockDevice, AnyBlockDevice, CliCopier>;
using CliHydrator = Hydrator<CliClone>;

struct SessionOptions {
  Backend backend = Backend::kFile;
  HydratorOptions hydrator;  // HydratorDefaults(table) unless a command overrides them
  uint64_t rate_limit = 0;   // bytes/s, 0 = unlimited
  // Events are reported on stderr after this prefix ("blkclone serve: ").
  std::string log_prefix;
  // Background hydration stopping and a change of metadata mode end the
  // command, which says why itself (hydrate), instead of being reported for
  // an operator to act on while the command runs on (serve).
  bool events_end_command = false;
};

// What the table's features and core arguments ask of background hydration.
HydratorOptions HydratorDefaults(const CloneTable& table);

class Session {
 public:
  // Opens `record`'s devices and metadata (see OpenClone; refusing a finished
  // clone too) and starts the engine and the hydrator. Errors call for exit
  // status 1.
  static absl::StatusOr<std::unique_ptr<Session>> Open(const CloneRecord& record,
                                                       const SessionOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const CloneRecord& record() const { return record_; }
  // The clone as a BlockDevice; usable until Close().
  CliClone& clone() { return *clone_; }
  HydrationProgress progress() const { return hydrator_->progress(); }
  // What was hydrated when the session opened, before its hydrator started.
  uint64_t hydrated_bytes_at_open() const { return hydrated_bytes_at_open_; }
  CloneStatus Status() const { return CollectStatus(*clone_, *hydrator_, limiter_); }
  void Apply(const ControlMessage& message) { ApplyMessage(message, *hydrator_, limiter_); }
  // Why the metadata mode left rw, with events_end_command; OK until it does.
  absl::Status ModeCause() const;

  // Stops background hydration, lifts the rate limit so that copies in flight
  // end quickly, waits for them, commits and closes the clone. Idempotent;
  // progress() and Status() still answer afterwards.
  absl::Status Close();

 private:
  class EventLog;
  Session(CloneRecord record, const SessionOptions& options, CloneDevices devices);

  // Declared in the order they are built; destroyed in reverse, so the
  // hydrator goes after the clone is closed (see hydrator.hpp), as it must,
  // and the devices' claims are released last.
  const CloneRecord record_;
  std::vector<internal::UniqueFd> claims_;
  AnyBlockDevice source_;
  AnyBlockDevice dest_;
  std::unique_ptr<PersistentMetadata> metadata_;
  RateLimiter limiter_;
  BufferedCopier<AnyBlockDevice, AnyBlockDevice> buffered_;
  CliCopier copier_;
  std::unique_ptr<EventLog> events_;
  std::unique_ptr<CliClone> clone_;
  std::unique_ptr<CliHydrator> hydrator_;
  uint64_t hydrated_bytes_at_open_ = 0;
};

}  // namespace blkclone::cli

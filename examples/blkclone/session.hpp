// Session: a recorded clone opened and running in this process: its devices,
// proven to be the ones recorded at create and held, run by the library's
// CloneSession, with the events an operator must hear about on stderr.
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
#include "blkclone/clone_session.hpp"
#include "clone_devices.hpp"
#include "state.hpp"

namespace blkclone::cli {

using CliClone = SessionClone;

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
  // Chunks of zeroes read from the source are zeroed thinly on the
  // destination instead of written (BufferedCopierOptions::detect_zeroes).
  bool detect_zeroes = true;
};

// What the table's features and core arguments ask of background hydration.
HydratorOptions HydratorDefaults(const CloneTable& table);

class Session {
 public:
  // Opens `record`'s devices (see OpenClone) and runs the clone on them.
  // Errors call for exit status 1.
  static absl::StatusOr<std::unique_ptr<Session>> Open(const CloneRecord& record,
                                                       const SessionOptions& options);
  ~Session();

  const CloneRecord& record() const { return record_; }
  CloneSession& clone_session() { return *session_; }
  // The clone as a BlockDevice; usable until Close().
  CliClone& clone() { return session_->clone(); }
  HydrationProgress progress() const { return session_->progress(); }
  CloneStatus Status() const { return session_->Status(); }
  void Apply(const ControlMessage& message) { session_->Apply(message); }
  absl::Status Close() { return session_->Close(); }

 private:
  class EventLog;
  Session(CloneRecord record, std::vector<internal::UniqueFd> claims,
          std::unique_ptr<EventLog> events);

  // Destroyed in reverse: the clone closes before the devices' claims go.
  const CloneRecord record_;
  std::vector<internal::UniqueFd> claims_;
  std::unique_ptr<EventLog> events_;
  std::unique_ptr<CloneSession> session_;
};

}  // namespace blkclone::cli

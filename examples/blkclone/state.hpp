// The state directory: where `blkclone create` records a clone under its NAME
// (NAME.table, NAME.uuid, NAME.devices) so that later commands find it, plus
// the lock that lets only one command of the directory run a clone at a time
// (naming the holder) and the control socket's path.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "args.hpp"
#include "blkclone/control.hpp"
#include "device_identity.hpp"

namespace blkclone::cli {

// A recorded clone.
struct CloneRecord {
  std::string name;
  CloneTable table;            // normalised, with its length
  std::string uuid;            // of its metadata
  CloneIdentities identities;  // of its devices at create
};

class StateDir {
 public:
  // --state-dir, else $BLKCLONE_STATE_DIR, else /var/lib/blkclone; it must
  // be an existing directory (kInvalidArgument), never made here.
  static absl::StatusOr<StateDir> FromArgs(const ParsedArgs& args);

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path File(absl::string_view name, absl::string_view extension) const;

  // kNotFound, naming the directory, for a NAME never created;
  // kFailedPrecondition for a record that is damaged or incomplete.
  absl::StatusOr<CloneRecord> Load(absl::string_view name) const;
  // kAlreadyExists if NAME is recorded.
  absl::Status CheckNew(absl::string_view name) const;
  // Writes NAME.uuid, NAME.devices, then NAME.table, each atomically.
  absl::Status Save(const CloneRecord& record) const;
  // The recorded clone whose metadata has `uuid`, if any.
  std::optional<std::string> FindByUuid(absl::string_view uuid) const;

 private:
  explicit StateDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// Names are file names in the state directory: letters, digits, '.', '_'
// and '-', not starting with '.' or '-', at most 100 characters.
absl::Status CheckName(absl::string_view name);

// An exclusive flock on STATE_DIR/NAME.lock, released on destruction. The
// holder writes its command and pid into the file so that others can say who
// holds it.
class CloneLock {
 public:
  // Waits up to a second for a short-lived holder, then fails with
  // kUnavailable naming the holder.
  static absl::StatusOr<CloneLock> Acquire(const StateDir& dir, absl::string_view name,
                                           absl::string_view command);
  CloneLock(CloneLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  CloneLock& operator=(CloneLock&&) = delete;
  ~CloneLock();

 private:
  explicit CloneLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace blkclone::cli

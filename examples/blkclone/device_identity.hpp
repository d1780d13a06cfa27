// Device identities: what tells a device apart from every other, whatever
// path names it. create records the identity of each of a clone's devices and
// every later command compares, so that a path that has come to name another
// device (a symlink or hard link to another file, a replaced file, /dev names
// that moved between disks at a reboot) is refused instead of written.
#pragma once

#include <sys/stat.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blkclone::cli {

// An ordered list of fields, each a key and a value:
//   regular file:  type file, inode DEV:INO, and born SECONDS.NANOSECONDS where
//                  the file system keeps birth times (so that a new file that
//                  reuses a deleted file's inode number differs)
//   block device:  type block, then the disk's stable name when it has one:
//                  wwid, serial or dm-uuid from sysfs, or loop DEV:INO+OFFSET
//                  (a loop device's backing file), plus partition N and start
//                  SECTOR for a partition; without one, block MAJ:MIN and size
//   remote device: type remote, name NAME (an NBD URI or rbd: name)
// A disk with a stable name is the same disk under another device number.
class DeviceIdentity {
 public:
  using Field = std::pair<std::string, std::string>;

  DeviceIdentity() = default;
  explicit DeviceIdentity(std::vector<Field> fields) : fields_(std::move(fields)) {}
  // Of the regular file or block device open as `fd`, whose fstat is `st`.
  static DeviceIdentity Of(int fd, const struct stat& st);
  static DeviceIdentity OfRemote(absl::string_view name);

  const std::vector<Field>& fields() const { return fields_; }
  bool operator==(const DeviceIdentity& other) const = default;

  // How `now` differs from this identity, recorded earlier, in words:
  // "inode 2049:12 at create, 2049:13 now"; empty when it does not.
  std::string ChangeTo(const DeviceIdentity& now) const;

 private:
  std::vector<Field> fields_;
};

// The identities of a clone's devices, as STATE_DIR/NAME.devices holds them:
// a line "ROLE KEY VALUE" per field, ROLE being metadata, destination or source.
struct CloneIdentities {
  DeviceIdentity metadata;
  DeviceIdentity destination;
  DeviceIdentity source;

  std::string Format() const;
  // kInvalidArgument naming the line at fault.
  static absl::StatusOr<CloneIdentities> Parse(absl::string_view text);
};

}  // namespace blkclone::cli

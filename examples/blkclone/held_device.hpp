// Opening a device for a command that holds it: proving which device the path
// names (its DeviceIdentity) and claiming the metadata device and the
// destination, so that no other blkclone command opens them meanwhile, whatever
// state directory or path it reaches them by.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/control.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "device_identity.hpp"
#include "devices.hpp"

namespace blkclone::cli {

// kShared for a source, which clones may share; kExclusive for a metadata
// device or destination.
enum class Hold { kShared, kExclusive };

struct HeldDevice {
  AnyBlockDevice device;
  DeviceIdentity identity;
  // An exclusive local device's claim, released when this is destroyed: an
  // flock, which every blkclone command takes; on a block device opened with
  // O_EXCL, which the kernel also refuses while it is mounted or claimed by
  // another program. Empty for a shared or remote device.
  internal::UniqueFd claim;
};

// Opens `path` with `backend` (`role`, such as "source", starts every error).
// A local device must exist and be a regular file or block device. An
// exclusive one is claimed before it is opened for I/O, waiting a second for a
// short-lived holder; then kUnavailable names the holder where it can. Remote
// devices (NBD URIs, rbd: names) are identified by their name, not claimed.
absl::StatusOr<HeldDevice> OpenHeld(absl::string_view role, const std::string& path,
                                    Backend backend, Access access, Hold hold);

// The three devices of a table are three different devices, whatever paths
// name them (a clone into its own source would overwrite it).
absl::Status CheckDistinctDevices(const CloneTable& table);

}  // namespace blkclone::cli

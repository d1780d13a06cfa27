// Opening the devices of a clone by name (see device_registry.hpp), with
// errors that say which device (source, destination, metadata device) is at
// fault.
#pragma once

#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "args.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/control.hpp"
#include "blkclone/device_registry.hpp"

namespace blkclone::cli {

// --backend, default file; names the backends built in when it is unknown.
absl::StatusOr<Backend> BackendFromArgs(const ParsedArgs& args);

enum class Access { kReadOnly, kReadWrite };

// Folds --ceph-conf, if given, into each rbd: name among `paths` that names no
// conf (as :conf=ABSOLUTE_PATH); kInvalidArgument if none is an rbd: name.
absl::Status ApplyCephConf(const ParsedArgs& args, std::span<std::string* const> paths);

// OpenDeviceByName, with `role` ("source", ...) and the name starting every
// error; a local device is checked and claimed by OpenHeld first.
absl::StatusOr<AnyBlockDevice> OpenDevice(absl::string_view role, const std::string& path,
                                          Backend backend, Access access);

}  // namespace blkclone::cli

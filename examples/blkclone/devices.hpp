// Opening the devices of a clone by path with the chosen backend, with errors
// that say which device (source, destination, metadata device) is at fault.
#pragma once

#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "args.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/control.hpp"

namespace blkclone::cli {

// kDirect and kUring exist only where the build includes those backends.
enum class Backend { kFile, kDirect, kUring };

// --backend, default file; names the backends built in when it is unknown.
absl::StatusOr<Backend> BackendFromArgs(const ParsedArgs& args);

enum class Access { kReadOnly, kReadWrite };

// Whether `path` is an NBD URI (nbd://, nbds://, nbd+unix://, nbds+unix://),
// which names a remote source rather than a file.
bool IsNbdUri(absl::string_view path);

// Whether `path` names a remote device (an NBD URI or an rbd: name), which is
// not a file: no stat, no absolute path.
bool IsRemoteName(absl::string_view path);

// Folds --ceph-conf, if given, into each rbd: name among `paths` that names no
// conf (as :conf=ABSOLUTE_PATH); kInvalidArgument if none is an rbd: name.
absl::Status ApplyCephConf(const ParsedArgs& args, std::span<std::string* const> paths);

// Opens a regular file or block device (which OpenHeld checks and claims
// first), or (with the nbd backend built in) a read-only NBD source by URI, or
// (with the rbd backend) an RBD image by rbd: name; `role` ("source", ...)
// starts every error.
absl::StatusOr<AnyBlockDevice> OpenDevice(absl::string_view role, const std::string& path,
                                          Backend backend, Access access);

}  // namespace blkclone::cli

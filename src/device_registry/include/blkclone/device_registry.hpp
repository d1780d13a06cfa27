// Opening a device by name through the backends this library was built with:
// a regular file or block device by path (with the backend chosen), an NBD
// export by URI (nbd://, nbds://, nbd+unix://, nbds+unix://, read-only) and an
// RBD image by rbd: name (see rbd_name.hpp); and the fastest copier between
// two devices it opened.
//
//   BLKCLONE_ASSIGN_OR_RETURN(blkclone::Backend backend, blkclone::BackendByName("uring"));
//   BLKCLONE_ASSIGN_OR_RETURN(
//       blkclone::AnyBlockDevice source,
//       blkclone::OpenDeviceByName("nbd+unix:///disk?socket=/run/nbd.sock", {.backend = backend}));
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/any_copier.hpp"

namespace blkclone {

// How local devices (files, block devices) are driven: kFile through the page
// cache (FileDevice), kDirect with O_DIRECT (a UringDevice opened direct where
// io_uring is built, else a DirectDevice), kUring through io_uring
// (UringDevice). kDirect and kUring exist only where the build includes those
// backends.
enum class Backend { kFile, kDirect, kUring };

// The names of the backends built in, "file" first.
std::vector<std::string> BuiltBackends();
// kInvalidArgument, naming the backends built in, for any other name.
absl::StatusOr<Backend> BackendByName(absl::string_view name);

struct DeviceOpenOptions {
  Backend backend = Backend::kFile;
  bool read_only = true;
};

// Whether `name` is an NBD URI, which names a remote export rather than a file.
bool IsNbdUri(absl::string_view name);
// Whether `name` names a remote device (an NBD URI or an rbd: name): no file.
bool IsRemoteName(absl::string_view name);

// Opens the device `name` names. Errors: kInvalidArgument for a writable NBD
// export or a malformed rbd: name; kUnimplemented for a kind of device whose
// backend was not built in; otherwise the backend's own.
absl::StatusOr<AnyBlockDevice> OpenDeviceByName(const std::string& name,
                                                const DeviceOpenOptions& options);

// The fastest copier between two devices this library opened: io_uring's
// linked read and write between two UringDevices, copy_file_range between two
// FileDevices, a BufferedCopier (`buffered`) otherwise. A fallback to buffers
// is told to `log` (if set) in one line: when the io_uring copier cannot
// start (then, while choosing), or when the kernel first refuses
// copy_file_range between the two files (then, on a copier thread). Both
// devices must outlive the copier.
AnyCopier FastestCopier(AnyBlockDevice& source, AnyBlockDevice& destination,
                        const BufferedCopierOptions& buffered,
                        std::function<void(const std::string& line)> log = nullptr);

}  // namespace blkclone

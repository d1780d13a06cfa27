// Opening a regular file or block device node for a backend, and describing
// it as a DeviceInfo; shared by FileDevice, DirectDevice and UringDevice.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/device_info.hpp"
#include "blkclone/internal/unique_fd.hpp"

namespace blkclone::internal {

struct FdFile {
  UniqueFd fd;
  std::string path;
  bool is_block_device = false;
  uint64_t size = 0;
  uint32_t sector_size = 0;  // block devices: the logical sector size (BLKSSZGET)
};

// Opens `path` read-only or read-write, with O_DIRECT if `direct`. Errors:
// those of open (kNotFound, kPermissionDenied, ...); kInvalidArgument for
// something that is neither a regular file nor a block device; kUnimplemented
// when the file system refuses O_DIRECT (tmpfs before Linux 6.6, for one).
[[nodiscard]] absl::StatusOr<FdFile> OpenFdFile(const std::string& path, bool read_only,
                                                bool direct);

// The DeviceInfo of `file`: a block device's own sector size, `file_block_size`
// for a regular file; discard and write-zeroes; FUA emulated. kInvalidArgument
// for a bad block size or a size that is not a multiple of it.
[[nodiscard]] absl::StatusOr<DeviceInfo> DescribeFdFile(const FdFile& file,
                                                        uint32_t file_block_size, bool read_only);

}  // namespace blkclone::internal

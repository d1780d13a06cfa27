// Where a file's data is, from lseek(SEEK_DATA / SEEK_HOLE): the kBlockStatus
// answer of the file-descriptor backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/request.hpp"

namespace blkclone::internal {

// Replaces `extents` with the allocation of [offset, offset + length) of the
// file open as `fd`, in whole `block`s: a block holding any data is data.
// Beyond the end of the file is a hole. Blocks on the file's metadata only.
[[nodiscard]] absl::Status DescribeFileAllocation(int fd, const std::string& path, uint64_t offset,
                                                  uint64_t length, uint64_t block,
                                                  std::vector<Extent>& extents);

}  // namespace blkclone::internal

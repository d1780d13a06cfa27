// A file's holes and data through lseek(SEEK_DATA / SEEK_HOLE).
#include "blkclone/internal/fd_allocation.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/extents.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// The first offset at or after `from` that is data (whence SEEK_DATA) or a
// hole (SEEK_HOLE); `end` when there is none before it.
absl::StatusOr<uint64_t> Seek(int fd, const std::string& path, uint64_t from, uint64_t end,
                              int whence) {
  const off_t found = ::lseek(fd, static_cast<off_t>(from), whence);
  if (found >= 0) return std::min(static_cast<uint64_t>(found), end);
  if (errno == ENXIO) return end;  // no data after `from` (or `from` is past the end)
  return ErrnoStatus(errno, absl::StrCat("lseek ", whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE",
                                         " ", path),
                     from, end - from);
}

}  // namespace

absl::Status DescribeFileAllocation(int fd, const std::string& path, uint64_t offset,
                                    uint64_t length, uint64_t block, std::vector<Extent>& extents) {
  const uint64_t end = offset + length;
  std::vector<Extent> data;
  for (uint64_t at = offset; at < end;) {
    BLKCLONE_ASSIGN_OR_RETURN(const uint64_t data_at, Seek(fd, path, at, end, SEEK_DATA));
    if (data_at == end) break;
    BLKCLONE_ASSIGN_OR_RETURN(const uint64_t hole_at, Seek(fd, path, data_at, end, SEEK_HOLE));
    data.push_back({.offset = data_at, .length = std::max(hole_at, data_at + 1) - data_at});
    at = data.back().end();  // always moves, even if the file changes meanwhile
  }
  extents = RoundExtents(data, offset, length, block);
  return absl::OkStatus();
}

}  // namespace blkclone::internal

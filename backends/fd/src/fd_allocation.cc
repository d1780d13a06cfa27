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
  extents.clear();
  const uint64_t end = offset + length;
  uint64_t described = offset;  // everything before it is in `extents`
  const auto describe_up_to = [&](uint64_t up_to, bool hole) {
    if (up_to <= described) return;
    AppendExtent(extents, described, up_to - described, hole);
    described = up_to;
  };
  for (uint64_t at = offset; at < end;) {
    BLKCLONE_ASSIGN_OR_RETURN(const uint64_t data, Seek(fd, path, at, end, SEEK_DATA));
    describe_up_to(data / block * block, /*hole=*/true);
    if (data == end) break;
    BLKCLONE_ASSIGN_OR_RETURN(const uint64_t hole, Seek(fd, path, data, end, SEEK_HOLE));
    describe_up_to(std::min((hole + block - 1) / block * block, end), /*hole=*/false);
    at = std::max(hole, data + 1);  // always moves, even if the file changes meanwhile
  }
  describe_up_to(end, /*hole=*/true);
  return absl::OkStatus();
}

}  // namespace blkclone::internal

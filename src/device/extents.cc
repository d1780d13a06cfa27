// kBlockStatus answers: building and checking them.
#include "blkclone/extents.hpp"

#include "absl/strings/str_cat.h"

namespace blkclone {

void AppendExtent(std::vector<Extent>& extents, uint64_t offset, uint64_t length, bool hole) {
  if (length == 0) return;
  if (!extents.empty() && extents.back().end() == offset && extents.back().hole == hole) {
    extents.back().length += length;
    return;
  }
  extents.push_back({.offset = offset, .length = length, .hole = hole});
}

absl::Status CheckExtents(std::span<const Extent> extents, uint64_t offset, uint64_t length,
                          uint64_t block) {
  uint64_t at = offset;
  for (const Extent& extent : extents) {
    if (extent.offset != at)
      return absl::InternalError(
          absl::StrCat("block status: extent at ", extent.offset, ", expected ", at));
    if (extent.length == 0 || extent.length % block != 0)
      return absl::InternalError(absl::StrCat("block status: extent at ", extent.offset,
                                              " has length ", extent.length,
                                              ", not a positive multiple of ", block));
    at += extent.length;
  }
  if (at != offset + length)
    return absl::InternalError(absl::StrCat("block status: extents end at ", at, ", expected ",
                                            offset + length));
  return absl::OkStatus();
}

uint64_t HoleBytes(std::span<const Extent> extents) {
  uint64_t bytes = 0;
  for (const Extent& extent : extents) {
    if (extent.hole) bytes += extent.length;
  }
  return bytes;
}

}  // namespace blkclone

// kBlockStatus answers: building and checking them.
#include "blkclone/extents.hpp"

#include <algorithm>

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

std::vector<Extent> RoundExtents(std::span<const Extent> extents, uint64_t offset, uint64_t length,
                                 uint64_t block) {
  std::vector<Extent> rounded;
  const uint64_t end = offset + length;
  uint64_t described = offset;  // everything before it is in `rounded`
  const auto describe_up_to = [&](uint64_t up_to, bool hole) {
    up_to = std::min(up_to, end);
    if (up_to <= described) return;
    AppendExtent(rounded, described, up_to - described, hole);
    described = up_to;
  };
  for (const Extent& extent : extents) {
    if (extent.hole || extent.end() <= offset || extent.offset >= end) continue;
    describe_up_to(std::max(extent.offset, offset) / block * block, /*hole=*/true);
    describe_up_to((extent.end() + block - 1) / block * block, /*hole=*/false);
  }
  describe_up_to(end, /*hole=*/true);
  return rounded;
}

uint64_t HoleBytes(std::span<const Extent> extents) {
  uint64_t bytes = 0;
  for (const Extent& extent : extents) {
    if (extent.hole) bytes += extent.length;
  }
  return bytes;
}

}  // namespace blkclone

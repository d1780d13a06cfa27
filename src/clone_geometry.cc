// Validation of a clone's geometry, with errors that name the rule broken.
#include "blkclone/clone_geometry.hpp"

#include <bit>

#include "absl/strings/str_cat.h"

namespace blkclone {

// A power of two from the minimum up is a whole number of sectors.
static_assert(std::has_single_bit(kMinRegionSize) && kMinRegionSize % 512 == 0);
static_assert(std::has_single_bit(kMaxRegionSize) && kMinRegionSize <= kMaxRegionSize);

absl::Status CheckRegionSize(uint64_t bytes) {
  if (!std::has_single_bit(bytes)) return absl::InvalidArgumentError("not a power of two");
  if (bytes < kMinRegionSize) return absl::InvalidArgumentError("less than 4 KiB");
  if (bytes > kMaxRegionSize) return absl::InvalidArgumentError("more than 1 GiB");
  return absl::OkStatus();
}

absl::StatusOr<CloneGeometry> MakeCloneGeometry(const DeviceInfo& source, const DeviceInfo& dest,
                                                uint64_t region_size) {
  if (absl::Status rule = CheckRegionSize(region_size); !rule.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("region size ", region_size, ": ", rule.message()));
  for (auto [name, info] : {std::pair{"source", &source}, std::pair{"destination", &dest}}) {
    if (region_size % info->logical_block_size != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("region size ", region_size, " is not a multiple of the ", name,
                       "'s logical block size ", info->logical_block_size));
  }
  if (dest.size < source.size)
    return absl::InvalidArgumentError(
        absl::StrCat("destination (", dest.size, " bytes) is smaller than the source (",
                     source.size, " bytes)"));
  const uint64_t regions = source.size / region_size + (source.size % region_size != 0);
  if (regions > kMaxRegionCount)
    return absl::InvalidArgumentError(
        absl::StrCat("too many regions: ", regions, " (at most ", kMaxRegionCount,
                     "); use a region size of at least ",
                     std::bit_ceil(source.size / kMaxRegionCount), " bytes"));
  return CloneGeometry{.source_size = source.size,
                       .dest_size = dest.size,
                       .region_size = region_size,
                       .region_count = regions};
}

}  // namespace blkclone

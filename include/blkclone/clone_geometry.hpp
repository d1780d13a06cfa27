// Validation of a clone's shape: region size and device sizes.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "blkclone/device_info.hpp"
#include "blkclone/metadata.hpp"

namespace blkclone {

inline constexpr uint64_t kMinRegionSize = 4096;
inline constexpr uint64_t kMaxRegionSize = uint64_t{1} << 30;
inline constexpr uint64_t kMaxRegionCount = uint64_t{1} << 32;

// The geometry of a clone of `source` into `dest` with `region_size`, or
// kInvalidArgument naming the rule broken: region size not a power of two, out
// of 4 KiB..1 GiB, not a multiple of a device's logical block size; destination
// smaller than the source; more than 2^32 regions.
[[nodiscard]] absl::StatusOr<CloneGeometry> MakeCloneGeometry(const DeviceInfo& source,
                                                              const DeviceInfo& dest,
                                                              uint64_t region_size);

}  // namespace blkclone

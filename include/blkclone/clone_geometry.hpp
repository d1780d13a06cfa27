// Validation of a clone's shape: region size and device sizes.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "blkclone/device_info.hpp"
#include "blkclone/metadata.hpp"

namespace blkclone {

inline constexpr uint64_t kMinRegionSize = 4096;
inline constexpr uint64_t kMaxRegionSize = uint64_t{1} << 30;
inline constexpr uint64_t kMaxRegionCount = uint64_t{1} << 32;

// OK when `bytes` is a valid region size: a power of two from 4 KiB to 1 GiB
// (hence a whole number of 512-byte sectors). Otherwise kInvalidArgument whose
// message is the problem alone ("not a power of two", "less than 4 KiB",
// "more than 1 GiB"), for the caller to put after what it was given, in the
// unit it was given in. The one rule for tables, options and geometries.
[[nodiscard]] absl::Status CheckRegionSize(uint64_t bytes);

// The geometry of a clone of `source` into `dest` with `region_size`, or
// kInvalidArgument naming the rule broken: region size not a power of two, out
// of 4 KiB..1 GiB, not a multiple of a device's logical block size; destination
// smaller than the source; more than 2^32 regions.
[[nodiscard]] absl::StatusOr<CloneGeometry> MakeCloneGeometry(const DeviceInfo& source,
                                                              const DeviceInfo& dest,
                                                              uint64_t region_size);

}  // namespace blkclone

// Building and checking kBlockStatus answers (lists of Extent).
//
//   std::vector<blkclone::Extent> extents;
//   blkclone::AppendExtent(extents, 0, 4096, /*hole=*/false);
//   blkclone::AppendExtent(extents, 4096, 8192, /*hole=*/true);
//   BLKCLONE_RETURN_IF_ERROR(blkclone::CheckExtents(extents, 0, 12288, 512));
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/request.hpp"

namespace blkclone {

// Appends [offset, offset + length), merged into the last extent when that one
// ends at `offset` and is of the same kind. Empty ranges are ignored.
void AppendExtent(std::vector<Extent>& extents, uint64_t offset, uint64_t length, bool hole);

// Whether `extents` is a valid answer for [offset, offset + length) on a
// device with logical block size `block`: contiguous from `offset`, covering
// the range exactly, no empty extent, every boundary a multiple of `block`.
[[nodiscard]] absl::Status CheckExtents(std::span<const Extent> extents, uint64_t offset,
                                        uint64_t length, uint64_t block);

// `extents` (sorted, contiguous) restricted to [offset, offset + length) and
// coarsened to whole `block`s: a block holding any data becomes data.
std::vector<Extent> RoundExtents(std::span<const Extent> extents, uint64_t offset, uint64_t length,
                                 uint64_t block);

// Bytes of holes in `extents`.
uint64_t HoleBytes(std::span<const Extent> extents);

}  // namespace blkclone

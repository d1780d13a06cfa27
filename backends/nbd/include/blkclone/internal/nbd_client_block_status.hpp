// A server's base:allocation answer as kBlockStatus extents: NBD describes
// bytes, a device whole logical blocks.
//
//   std::vector<Extent> answer;  // from the server, in bytes, merged
//   uint64_t described = AppendAnswerInBlocks(answer, 512, *request.extents);
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "blkclone/request.hpp"

namespace blkclone::internal {

// Appends `answer` (non-empty, contiguous, starting at a multiple of `block`,
// ending at or before a multiple of `block` that was asked for) to `extents`
// in whole blocks: a block holding any data is data, and so is a block the
// answer stops inside. Returns where the appended extents end.
uint64_t AppendAnswerInBlocks(std::span<const Extent> answer, uint64_t block,
                              std::vector<Extent>& extents);

}  // namespace blkclone::internal

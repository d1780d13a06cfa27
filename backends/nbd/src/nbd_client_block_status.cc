// Rounding a server's block status answer to whole blocks.
#include "blkclone/internal/nbd_client_block_status.hpp"

#include "blkclone/extents.hpp"

namespace blkclone::internal {
namespace {

uint64_t RoundDown(uint64_t value, uint64_t block) { return value / block * block; }
uint64_t RoundUp(uint64_t value, uint64_t block) { return RoundDown(value + block - 1, block); }

}  // namespace

uint64_t AppendAnswerInBlocks(std::span<const Extent> answer, uint64_t block,
                              std::vector<Extent>& extents) {
  const uint64_t end = RoundUp(answer.back().end(), block);
  for (const Extent& extent : answer) {
    const uint64_t last = &extent == &answer.back() ? end : extent.end();
    // Only the whole blocks inside a hole are a hole.
    const uint64_t hole_begin = RoundUp(extent.offset, block);
    const uint64_t hole_end = RoundDown(extent.end(), block);
    if (!extent.hole || hole_begin >= hole_end) {
      AppendExtent(extents, extent.offset, last - extent.offset, /*hole=*/false);
      continue;
    }
    AppendExtent(extents, extent.offset, hole_begin - extent.offset, /*hole=*/false);
    AppendExtent(extents, hole_begin, hole_end - hole_begin, /*hole=*/true);
    AppendExtent(extents, hole_end, last - hole_end, /*hole=*/false);
  }
  return end;
}

}  // namespace blkclone::internal

// Metadata block I/O shared by PersistentMetadata and the check and dump tools:
// aligned block buffers, batches of requests, the superblock pair, and one
// sequential pass over both bitmap slot arrays.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto slots, ReadSuperblocks(device));
//   BLKCLONE_ASSIGN_OR_RETURN(StoredHeader header, ChooseSuperblock(slots));
//   BLKCLONE_RETURN_IF_ERROR(ForEachBitmapBlock(device, header, [&](const BitmapBlockView& v) {
//     return v.choice.damage.empty() ? absl::OkStatus() : absl::DataLossError("...");
//   }));
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/persistent_metadata.hpp"

namespace blkclone::internal {

// Metadata blocks moved by one request when opening or formatting: 4 MiB.
inline constexpr uint64_t kIoChunkBlocks = 1024;

// Zeroed metadata blocks in memory aligned for the device that will use them.
class BlockBuffer {
 public:
  BlockBuffer(size_t blocks, const DeviceInfo& info);

  Block block(size_t i) { return Block(data_.data() + i * kMetadataBlockSize, kMetadataBlockSize); }
  ConstBlock block(size_t i) const {
    return ConstBlock(data_.data() + i * kMetadataBlockSize, kMetadataBlockSize);
  }
  // `count` blocks from block `first`, as one span for a request.
  std::span<std::byte> blocks(size_t first, size_t count) {
    return {data_.data() + first * kMetadataBlockSize, count * kMetadataBlockSize};
  }

 private:
  AlignedBuffer data_;
};

// kInvalidArgument unless the device can read and write whole metadata blocks:
// its logical block size divides one and its transfer limit, if any, holds one.
absl::Status CheckDevice(const DeviceInfo& info);
// Most metadata blocks one read or write may carry on this device.
uint64_t ChunkBlocks(const DeviceInfo& info);
// Submits every request at once and waits for all of them; the first error wins.
absl::Status SubmitAll(AnyBlockDevice& device, std::span<Request> requests);
// Makes `count` blocks from `first_block` read back as zeroes (not yet durable).
absl::Status ZeroBlocks(AnyBlockDevice& device, uint64_t first_block, uint64_t count);

// The superblock slots as stored: blocks 0..3, or 0..1 on a device of 2 or 3
// blocks; fails when the device cannot hold or read two.
struct SuperblockBlocks {
  BlockBuffer buffer;
  int count;
};
absl::StatusOr<SuperblockBlocks> ReadSuperblockBlocks(AnyBlockDevice& device);
// Every superblock slot, decoded; fails only when they cannot be read.
absl::StatusOr<std::vector<absl::StatusOr<StoredHeader>>> ReadSuperblocks(AnyBlockDevice& device);
// Writes `header` into every copy of superblock pair `pair` of its format, in
// one request; the caller flushes.
absl::Status WriteSuperblockPair(AnyBlockDevice& device, int pair, const StoredHeader& header);
// Writes `header` into `count` superblock slots from `first`, in one request; the caller flushes.
absl::Status WriteSuperblocks(AnyBlockDevice& device, int first, int count,
                              const StoredHeader& header);

// Writes a version of each of `blocks` (sorted) into every copy of pair
// `pair_of(i)` of `header`'s layout, stamped with its generation; `fill(i, out)`
// stores the payload words of blocks[i]. Neighbouring blocks bound for the same
// slot array go out as one request. The caller flushes.
absl::Status WriteBitmapVersions(AnyBlockDevice& device, const StoredHeader& header,
                                 std::span<const uint64_t> blocks,
                                 absl::FunctionRef<int(size_t)> pair_of,
                                 absl::FunctionRef<void(size_t, Block)> fill);

// Bitmap payload words of `block` that describe regions (the last block's tail does not).
uint64_t WordsInBlock(uint64_t region_count, uint64_t block);

// One bitmap block with all of its slots, as a scan sees it.
struct BitmapBlockView {
  uint64_t index;
  int count;                                      // slots: 2 in format 1, 4 in format 2
  std::array<const std::byte*, kMaxSlots> slots;  // each kMetadataBlockSize bytes
  std::array<BitmapSlot, kMaxSlots> kinds;
  BitmapChoice choice;

  // Word `i` of the committed version (0 for a block never committed).
  uint64_t Word(uint64_t i) const {
    return choice.slot == kNoSlot
               ? 0
               : LoadBitmapWord(ConstBlock(slots[choice.slot], kMetadataBlockSize), i);
  }
};

// Calls `visit` for every bitmap block in order, reading every slot array in
// large sequential chunks; stops at the first error, from I/O or from `visit`.
absl::Status ForEachBitmapBlock(AnyBlockDevice& device, const StoredHeader& header,
                                absl::FunctionRef<absl::Status(const BitmapBlockView&)> visit);

// Names a bitmap slot for an operator: block index, its regions, slot and device block.
std::string DescribeSlot(const StoredHeader& header, uint64_t block, int slot);
// DescribeSlot of the damaged slot, then what is wrong with it.
std::string DescribeDamage(const StoredHeader& header, const BitmapBlockView& view);
// DescribeSlot of the suspect slot, what is wrong with it, and where the committed version is.
std::string DescribeSuspect(const StoredHeader& header, const BitmapBlockView& view);

}  // namespace blkclone::internal

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
#include <new>
#include <span>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
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

  Block block(size_t i) { return Block(data_.get() + i * kMetadataBlockSize, kMetadataBlockSize); }
  ConstBlock block(size_t i) const {
    return ConstBlock(data_.get() + i * kMetadataBlockSize, kMetadataBlockSize);
  }
  // `count` blocks from block `first`, as one span for a request.
  std::span<std::byte> blocks(size_t first, size_t count) {
    return {data_.get() + first * kMetadataBlockSize, count * kMetadataBlockSize};
  }

 private:
  struct Free {
    std::align_val_t alignment;
    void operator()(std::byte* p) const { ::operator delete[](p, alignment); }
  };
  std::unique_ptr<std::byte[], Free> data_;
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

// Blocks 0 and 1 as stored; fails when the device cannot hold or read them.
absl::StatusOr<BlockBuffer> ReadSuperblockBlocks(AnyBlockDevice& device);
// Both superblock slots, decoded; fails only when they cannot be read.
absl::StatusOr<std::array<absl::StatusOr<StoredHeader>, 2>> ReadSuperblocks(AnyBlockDevice& device);
// Writes `header` into superblock slot `slot`; the caller flushes.
absl::Status WriteSuperblock(AnyBlockDevice& device, int slot, const StoredHeader& header);

// Bitmap payload words of `block` that describe regions (the last block's tail does not).
uint64_t WordsInBlock(uint64_t region_count, uint64_t block);

// One bitmap block with both of its slots, as a scan sees it.
struct BitmapBlockView {
  uint64_t index;
  std::array<ConstBlock, 2> slots;
  std::array<BitmapSlot, 2> kinds;
  BitmapChoice choice;

  // Word `i` of the committed version (0 for a block never committed).
  uint64_t Word(uint64_t i) const {
    return choice.slot == kNoSlot ? 0 : LoadBitmapWord(slots[choice.slot], i);
  }
};

// Calls `visit` for every bitmap block in order, reading both slot arrays in
// large sequential chunks; stops at the first error, from I/O or from `visit`.
absl::Status ForEachBitmapBlock(AnyBlockDevice& device, const StoredHeader& header,
                                absl::FunctionRef<absl::Status(const BitmapBlockView&)> visit);

// Names a bitmap slot for an operator: block index, its regions, slot and device block.
std::string DescribeSlot(const StoredHeader& header, uint64_t block, int slot);
// DescribeSlot of the damaged slot, then what is wrong with it.
std::string DescribeDamage(const StoredHeader& header, const BitmapBlockView& view);

}  // namespace blkclone::internal

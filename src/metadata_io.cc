// Metadata block I/O: buffers, request batches, superblocks and bitmap scans.
#include "blkclone/internal/metadata_io.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"

namespace blkclone::internal {

BlockBuffer::BlockBuffer(size_t blocks, const DeviceInfo& info) {
  data_ = AlignedBuffer::Zeroed(std::max<size_t>(blocks, 1) * kMetadataBlockSize,
                                std::max<size_t>(kMetadataBlockSize, info.memory_alignment));
}

absl::Status CheckDevice(const DeviceInfo& info) {
  if (info.logical_block_size == 0 || kMetadataBlockSize % info.logical_block_size != 0)
    return absl::InvalidArgumentError(absl::StrCat("metadata device logical block size ",
                                                   info.logical_block_size, " does not divide the ",
                                                   kMetadataBlockSize, "-byte metadata block"));
  if (info.max_transfer != 0 && info.max_transfer < kMetadataBlockSize)
    return absl::InvalidArgumentError(absl::StrCat("metadata device transfers at most ",
                                                   info.max_transfer, " bytes, less than one ",
                                                   kMetadataBlockSize, "-byte metadata block"));
  return absl::OkStatus();
}

uint64_t ChunkBlocks(const DeviceInfo& info) {
  if (info.max_transfer == 0) return kIoChunkBlocks;
  return std::clamp<uint64_t>(info.max_transfer / kMetadataBlockSize, 1, kIoChunkBlocks);
}

absl::Status SubmitAll(AnyBlockDevice& device, std::span<Request> requests) {
  struct Batch {
    Mutex mu;
    CondVar done_cv;
    size_t remaining ABSL_GUARDED_BY(mu) = 0;
    absl::Status status ABSL_GUARDED_BY(mu);
  } batch;
  {
    MutexLock lock(batch.mu);
    batch.remaining = requests.size();
  }
  for (Request& request : requests) {
    request.context = &batch;
    request.on_complete = [](Request& r, absl::Status status) {
      auto* b = static_cast<Batch*>(r.context);
      MutexLock lock(b->mu);
      if (b->status.ok()) b->status = std::move(status);
      if (--b->remaining == 0) b->done_cv.SignalAll();
    };
    device.Submit(request);
  }
  MutexLock lock(batch.mu);
  batch.done_cv.Wait(
      batch.mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch.mu) { return batch.remaining == 0; });
  return batch.status;
}

absl::Status ZeroBlocks(AnyBlockDevice& device, uint64_t first_block, uint64_t count) {
  const Capabilities& caps = device.info().caps;
  const uint64_t offset = first_block * kMetadataBlockSize;
  const uint64_t length = count * kMetadataBlockSize;
  if (length == 0) return absl::OkStatus();
  // Deallocating keeps a sparse or thin metadata device small.
  if (caps.discard && caps.discard_zeroes_data) return Discard(device, offset, length);
  if (caps.write_zeroes) return WriteZeroes(device, offset, length);
  const uint64_t chunk = ChunkBlocks(device.info());
  BlockBuffer zeroes(chunk, device.info());
  for (uint64_t done = 0; done < count;) {
    const uint64_t n = std::min(chunk, count - done);
    BLKCLONE_RETURN_IF_ERROR(
        WriteAt(device, (first_block + done) * kMetadataBlockSize, zeroes.blocks(0, n)));
    done += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<SuperblockBlocks> ReadSuperblockBlocks(AnyBlockDevice& device) {
  const DeviceInfo& info = device.info();
  BLKCLONE_RETURN_IF_ERROR(CheckDevice(info));
  constexpr uint64_t kLeast = SuperblockSlots(kOldestFormatVersion);
  if (info.size < kLeast * kMetadataBlockSize)
    return absl::InvalidArgumentError(absl::StrCat("metadata device has ", info.size,
                                                   " bytes; the superblocks alone need ",
                                                   kLeast * kMetadataBlockSize));
  const int count = static_cast<int>(std::min<uint64_t>(kMaxSlots, info.size / kMetadataBlockSize));
  SuperblockBlocks raw{.buffer = BlockBuffer(count, info), .count = count};
  BLKCLONE_RETURN_IF_ERROR(ReadAt(device, 0, raw.buffer.blocks(0, count)));
  return raw;
}

absl::StatusOr<std::vector<absl::StatusOr<StoredHeader>>> ReadSuperblocks(AnyBlockDevice& device) {
  BLKCLONE_ASSIGN_OR_RETURN(const SuperblockBlocks raw, ReadSuperblockBlocks(device));
  std::vector<absl::StatusOr<StoredHeader>> slots;
  for (int s = 0; s < raw.count; ++s)
    slots.push_back(DecodeSuperblock(raw.buffer.block(s), s, device.info().size));
  return slots;
}

absl::Status WriteSuperblocks(AnyBlockDevice& device, int first, int count,
                              const StoredHeader& header) {
  BlockBuffer buffer(count, device.info());
  for (int c = 0; c < count; ++c) EncodeSuperblock(header, buffer.block(c));
  return WriteAt(device, static_cast<uint64_t>(first) * kMetadataBlockSize,
                 buffer.blocks(0, count));
}

absl::Status WriteSuperblockPair(AnyBlockDevice& device, int pair, const StoredHeader& header) {
  const int copies = CopiesIn(header.format_version);
  return WriteSuperblocks(device, pair * copies, copies, header);
}

absl::Status WriteBitmapVersions(AnyBlockDevice& device, const StoredHeader& header,
                                 std::span<const uint64_t> blocks,
                                 absl::FunctionRef<int(size_t)> pair_of,
                                 absl::FunctionRef<void(size_t, Block)> fill) {
  const MetadataLayout& layout = header.layout;
  const uint64_t chunk = ChunkBlocks(device.info());
  for (size_t first = 0; first < blocks.size(); first += chunk) {
    const size_t n = std::min<size_t>(chunk, blocks.size() - first);
    BlockBuffer buffer(n, device.info());
    for (size_t i = 0; i < n; ++i) {
      fill(first + i, buffer.block(i));
      SealBitmapBlock(buffer.block(i), header.uuid, blocks[first + i], header.generation);
    }
    std::vector<Request> writes;
    for (size_t i = 0; i < n;) {
      const int pair = pair_of(first + i);
      size_t end = i + 1;
      while (end < n && blocks[first + end] == blocks[first + end - 1] + 1 &&
             pair_of(first + end) == pair)
        ++end;
      for (int copy = 0; copy < layout.copies; ++copy) {
        const uint64_t array = layout.slot_start[pair * layout.copies + copy];
        writes.push_back(Request::Write((array + blocks[first + i]) * kMetadataBlockSize,
                                        buffer.blocks(i, end - i)));
      }
      i = end;
    }
    BLKCLONE_RETURN_IF_ERROR(SubmitAll(device, writes));
  }
  return absl::OkStatus();
}

uint64_t WordsInBlock(uint64_t region_count, uint64_t block) {
  const uint64_t words = region_count / 64 + (region_count % 64 != 0);
  const uint64_t first = block * kWordsPerBitmapBlock;
  return first >= words ? 0 : std::min(kWordsPerBitmapBlock, words - first);
}

absl::Status ForEachBitmapBlock(AnyBlockDevice& device, const StoredHeader& header,
                                absl::FunctionRef<absl::Status(const BitmapBlockView&)> visit) {
  const MetadataLayout& layout = header.layout;
  const int count = layout.slots();
  const uint64_t chunk = std::min(ChunkBlocks(device.info()), layout.bitmap_blocks);
  std::vector<BlockBuffer> buffers;
  for (int s = 0; s < count; ++s) buffers.emplace_back(chunk, device.info());
  for (uint64_t first = 0; first < layout.bitmap_blocks; first += chunk) {
    const uint64_t n = std::min(chunk, layout.bitmap_blocks - first);
    std::vector<Request> reads;
    for (int s = 0; s < count; ++s) {
      reads.push_back(Request::Read((layout.slot_start[s] + first) * kMetadataBlockSize,
                                    buffers[s].blocks(0, n)));
    }
    BLKCLONE_RETURN_IF_ERROR(SubmitAll(device, reads));
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t index = first + i;
      BitmapBlockView view{.index = index, .count = count, .slots = {}, .kinds = {}, .choice = {}};
      for (int s = 0; s < count; ++s) {
        view.slots[s] = buffers[s].block(i).data();
        view.kinds[s] = InspectBitmapSlot(buffers[s].block(i), header.uuid, index);
      }
      view.choice = ChooseBitmapSlot(std::span(view.kinds).first(count), header.generation);
      BLKCLONE_RETURN_IF_ERROR(visit(view));
    }
  }
  return absl::OkStatus();
}

std::string DescribeSlot(const StoredHeader& header, uint64_t block, int slot) {
  const uint64_t first_region = block * kRegionsPerBitmapBlock;
  const uint64_t last_region =
      std::min(first_region + kRegionsPerBitmapBlock, header.geometry.region_count) - 1;
  return absl::StrCat("bitmap block ", block, " (regions ", first_region, "..", last_region,
                      "), slot ", SlotName(slot, header.layout.copies), " at metadata block ",
                      header.layout.slot_start[slot] + block);
}

std::string DescribeDamage(const StoredHeader& header, const BitmapBlockView& view) {
  return absl::StrCat(DescribeSlot(header, view.index, view.choice.damaged_slot), ": ",
                      view.choice.damage);
}

std::string DescribeSuspect(const StoredHeader& header, const BitmapBlockView& view) {
  const BitmapChoice& choice = view.choice;
  return absl::StrCat(DescribeSlot(header, view.index, choice.suspect_slot), ": ", choice.suspicion,
                      "; the committed version is intact ",
                      choice.slot == kNoSlot
                          ? "(never committed: zeroes)"
                          : absl::StrCat("in slot ", SlotName(choice.slot, header.layout.copies)),
                      ", and a read-write open rewrites the block");
}

}  // namespace blkclone::internal

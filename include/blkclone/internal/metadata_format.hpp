// The on-disk format of PersistentMetadata as pure functions over byte spans:
// block layout, superblock and bitmap block encoding, the rules that pick the
// current copy of each, and CRC32C. No I/O here (see metadata_io.hpp);
// docs/metadata-format.md is the byte-by-byte description.
//
//   std::array<std::byte, kMetadataBlockSize> raw;
//   EncodeSuperblock(header, raw);
//   absl::StatusOr<StoredHeader> back = DecodeSuperblock(raw, 0, device_size);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/persistent_metadata.hpp"

namespace blkclone::internal {

inline constexpr uint32_t kFormatVersion = 1;
// Incompatible feature bits this build understands (compatible ones need no list).
inline constexpr uint64_t kKnownIncompatFeatures = 0;
// Blocks 0 and 1 hold the superblock slots; the bitmap slot arrays follow.
inline constexpr uint64_t kFirstBitmapBlock = 2;
inline constexpr uint64_t kBitmapHeaderSize = 64;
inline constexpr uint64_t kWordsPerBitmapBlock = (kMetadataBlockSize - kBitmapHeaderSize) / 8;
inline constexpr uint64_t kRegionsPerBitmapBlock = kWordsPerBitmapBlock * 64;
inline constexpr int kNoSlot = -1;

using Block = std::span<std::byte, kMetadataBlockSize>;
using ConstBlock = std::span<const std::byte, kMetadataBlockSize>;

// CRC32C (Castagnoli) of `data`, with the hardware instruction when the CPU has it.
uint32_t Crc32c(std::span<const std::byte> data);
// The table-driven implementation Crc32c falls back to; exposed for tests.
uint32_t Crc32cPortable(std::span<const std::byte> data);

// Bitmap blocks per slot array for `region_count` regions.
uint64_t BitmapBlocksFor(uint64_t region_count);
// The layout a format writes: both slot arrays right after the superblocks.
MetadataLayout StandardLayout(uint64_t region_count);
// kInvalidArgument naming the rule `geometry` breaks, if any.
absl::Status ValidateGeometry(const CloneGeometry& geometry);

// Whether a block's stored CRC32C matches its content (either block type).
bool ChecksumMatches(ConstBlock block);

// Writes `header` as a superblock (superblock_slot is not stored).
void EncodeSuperblock(const StoredHeader& header, Block out);
// Decodes superblock slot `slot` of a device of `device_size` bytes. Errors:
// kNotFound all zeroes, kFailedPrecondition no blkclone magic, kDataLoss bad
// checksum or impossible values, kUnimplemented other version or unknown
// incompatible features.
absl::StatusOr<StoredHeader> DecodeSuperblock(ConstBlock block, int slot, uint64_t device_size);
// The current header given both decoded slots: the valid one with the highest
// generation (slot 0 on a tie), needs_check if any valid slot of that generation
// has it. Errors: kNotFound both blank, kUnimplemented if either slot is of
// another version, else kFailedPrecondition (not blkclone metadata) or kDataLoss.
absl::StatusOr<StoredHeader> ChooseSuperblock(
    const std::array<absl::StatusOr<StoredHeader>, 2>& slots);

// Bitmap payload word `index` (< kWordsPerBitmapBlock).
uint64_t LoadBitmapWord(ConstBlock block, uint64_t index);
void StoreBitmapWord(Block block, uint64_t index, uint64_t word);
// Fills in the header and checksum of bitmap block `index` around its payload.
void SealBitmapBlock(Block block, const Uuid& uuid, uint64_t index, uint64_t generation);

enum class SlotKind {
  kBlank,    // header all zeroes: never written (or a first write torn before it)
  kForeign,  // header of no block of this metadata: damage
  kDamaged,  // this block's header, bad checksum
  kValid,
};

struct BitmapSlot {
  SlotKind kind = SlotKind::kBlank;
  uint64_t generation = 0;  // kDamaged and kValid only
};

// What one copy of bitmap block `index` of the metadata `uuid` holds.
BitmapSlot InspectBitmapSlot(ConstBlock block, const Uuid& uuid, uint64_t index);

struct BitmapChoice {
  int slot = kNoSlot;  // holds the committed version; kNoSlot: never committed, all zero
  // The other slot, when it holds a version newer than the superblock (an
  // interrupted commit): the next commit must overwrite it before any superblock
  // generation reaches it, or it would pass for committed.
  int rewrite_slot = kNoSlot;
  // Non-empty when the committed version cannot be trusted; names damaged_slot.
  absl::string_view damage;
  int damaged_slot = kNoSlot;

  // Where the next version of the block goes: never over the committed one, and
  // over an interrupted commit's version if there is one.
  int WriteSlot() const {
    if (slot != kNoSlot) return 1 - slot;
    return rewrite_slot != kNoSlot ? rewrite_slot : 1;
  }
};

// Picks the copy of a bitmap block that superblock generation `generation`
// committed: the valid slot with the highest generation <= `generation`. Since a
// commit only writes the slot not holding the committed version, damage is: a
// foreign slot, a damaged slot whose header claims a committed version newer than
// the chosen one, or two slots both newer than the superblock.
BitmapChoice ChooseBitmapSlot(const std::array<BitmapSlot, 2>& slots, uint64_t generation);

}  // namespace blkclone::internal

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
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/persistent_metadata.hpp"

namespace blkclone::internal {

// The version a format writes and a read-write open upgrades to; the oldest one read.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;
// Incompatible feature bits this build understands (compatible ones need no list).
inline constexpr uint64_t kKnownIncompatFeatures = 0;
inline constexpr uint64_t kBitmapHeaderSize = 64;
inline constexpr uint64_t kWordsPerBitmapBlock = (kMetadataBlockSize - kBitmapHeaderSize) / 8;
inline constexpr uint64_t kRegionsPerBitmapBlock = kWordsPerBitmapBlock * 64;
inline constexpr int kNoSlot = -1;
// Superblock slots, and slots per bitmap block, in the format with the most.
inline constexpr int kMaxSlots = 4;

// Copies of every committed version: 1 in format 1, 2 in format 2. Slot s (of
// the superblock or of a bitmap block) is copy s % copies of pair s / copies,
// and a commit writes every copy of the pair that does not hold the current version.
constexpr int CopiesIn(uint32_t format_version) { return format_version >= 2 ? 2 : 1; }
// The superblock slots are blocks 0 .. SuperblockSlots - 1.
constexpr int SuperblockSlots(uint32_t format_version) { return 2 * CopiesIn(format_version); }
constexpr int PairOf(int slot, int copies) { return slot / copies; }
// A slot's name: A and B in format 1; A1, A2, B1 and B2 in format 2.
std::string SlotName(int slot, int copies);

using Block = std::span<std::byte, kMetadataBlockSize>;
using ConstBlock = std::span<const std::byte, kMetadataBlockSize>;

// CRC32C (Castagnoli) of `data`, with the hardware instruction when the CPU has it.
uint32_t Crc32c(std::span<const std::byte> data);
// The table-driven implementation Crc32c falls back to; exposed for tests.
uint32_t Crc32cPortable(std::span<const std::byte> data);

// Bitmap blocks per slot array for `region_count` regions.
uint64_t BitmapBlocksFor(uint64_t region_count);
// The layout a format of `format_version` writes: the slot arrays right after the superblocks.
MetadataLayout StandardLayout(uint64_t region_count, uint32_t format_version = kFormatVersion);
// Where an upgrade of `header` (format 1) puts the format 2 slot arrays: after
// every block format 1 uses, so that it stays readable until the upgrade is
// complete. kResourceExhausted naming the size needed if the device is too small.
absl::StatusOr<MetadataLayout> UpgradeLayout(const StoredHeader& header, uint64_t device_size);
// Bytes of a device holding `layout` (of `format_version`).
uint64_t LayoutEnd(const MetadataLayout& layout, uint32_t format_version);
// kInvalidArgument naming the rule `geometry` breaks, if any.
absl::Status ValidateGeometry(const CloneGeometry& geometry);

// Whether a block's stored CRC32C matches its content (either block type).
bool ChecksumMatches(ConstBlock block);

// Writes `header` as a superblock of its format version (superblock_slot and
// superblock_copies are not stored).
void EncodeSuperblock(const StoredHeader& header, Block out);
// Decodes superblock slot `slot` of a device of `device_size` bytes, of either
// format version. Errors: kNotFound all zeroes, kFailedPrecondition no blkclone
// magic, kDataLoss bad checksum or impossible values, kUnimplemented a newer
// version or unknown incompatible features.
absl::StatusOr<StoredHeader> DecodeSuperblock(ConstBlock block, int slot, uint64_t device_size);
// The current header given the decoded slots (blocks 0..3, fewer on a smaller
// device). Format 2 when any slot holds a valid format 2 superblock: the one
// with the highest generation, in the pair holding more copies of it (then the
// lower slot). Else format 1 from slots 0 and 1: the valid one with the highest
// generation (slot 0 on a tie). needs_check if any valid copy of that generation
// has it. Errors: kNotFound all blank, kUnimplemented if any slot is of a newer
// version, else kFailedPrecondition (not blkclone metadata) or kDataLoss.
absl::StatusOr<StoredHeader> ChooseSuperblock(std::span<const absl::StatusOr<StoredHeader>> slots);

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
  // The pair the next version goes to, every copy of it: never the pair of the
  // committed version, and the pair of an interrupted commit's version if any.
  int write_pair = 1;
  // The write pair holds a version newer than the superblock (an interrupted
  // commit): the next commit must overwrite it before any superblock generation
  // reaches it, or it would pass for committed.
  bool interrupted = false;
  // Format 2: the one slot that is not as a committed block's slots must be (a
  // copy of the committed version that is not one, or a slot holding data of
  // unknown age); the committed version is intact in its twin, and the block is
  // rewritten so that every version has its copies again.
  int suspect_slot = kNoSlot;
  absl::string_view suspicion;
  // Non-empty when the committed version cannot be trusted; names damaged_slot.
  absl::string_view damage;
  int damaged_slot = kNoSlot;

  bool MustRewrite() const { return interrupted || suspect_slot != kNoSlot; }
};

// Picks the copy of a bitmap block that superblock generation `generation`
// committed from its slots (2 in format 1, 4 in format 2): the valid slot with
// the highest generation <= `generation`. A slot is suspect when it is in the
// committed version's pair but not a valid copy of it, foreign, or a damaged slot
// whose header claims a committed version newer than the chosen one. Damage is
// one suspect slot in format 1, two in format 2 (whose committed versions have
// two copies, so that one damaged sector cannot cost one), or versions newer
// than the superblock in both pairs (the superblock lost a commit).
BitmapChoice ChooseBitmapSlot(std::span<const BitmapSlot> slots, uint64_t generation);

}  // namespace blkclone::internal

// Superblock and bitmap block encoding, validation and slot choice. Every
// multi-byte field is little-endian; the offsets below are those of
// docs/metadata-format.md.
#include "blkclone/internal/metadata_format.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "blkclone/clone_geometry.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

using Magic = std::array<char, 8>;
constexpr Magic kSuperblockMagic = {'B', 'L', 'K', 'C', 'L', 'O', 'N', 'E'};
constexpr Magic kBitmapMagic = {'B', 'L', 'K', 'C', 'B', 'M', 'A', 'P'};

// Both block types: CRC32C of bytes [4, 4096) at offset 0, magic at offset 8.
constexpr size_t kCrcOffset = 0;
constexpr size_t kMagicOffset = 8;

// Superblock fields.
constexpr size_t kSbVersion = 4;
constexpr size_t kSbGeneration = 16;
constexpr size_t kSbUuid = 24;
constexpr size_t kSbCompat = 40;
constexpr size_t kSbIncompat = 48;
constexpr size_t kSbNeedsCheck = 56;
constexpr size_t kSbBlockSize = 60;
constexpr size_t kSbRegionSize = 64;
constexpr size_t kSbRegionCount = 72;
constexpr size_t kSbSourceSize = 80;
constexpr size_t kSbDestSize = 88;
constexpr size_t kSbBitmapBlocks = 96;
constexpr size_t kSbSlotStart = 104;  // two u64: slot array A, then B

// Bitmap block fields.
constexpr size_t kBmGeneration = 16;
constexpr size_t kBmUuid = 24;
constexpr size_t kBmIndex = 40;

// Converts between native and little-endian order (the same operation both ways).
template <class T>
T LittleEndian(T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  if constexpr (std::endian::native == std::endian::little) {
    return value;
  } else if constexpr (sizeof(T) == 8) {
    return __builtin_bswap64(value);
  } else {
    return __builtin_bswap32(value);
  }
}

template <class T>
T LoadLe(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return LittleEndian(value);
}

template <class T>
void StoreLe(std::byte* p, T value) {
  value = LittleEndian(value);
  std::memcpy(p, &value, sizeof value);
}

bool AllZero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

bool HasMagic(ConstBlock block, const Magic& magic) {
  return std::memcmp(block.data() + kMagicOffset, magic.data(), magic.size()) == 0;
}

uint32_t BlockCrc(ConstBlock block) { return Crc32c(block.subspan(kCrcOffset + 4)); }

void StoreCrc(Block block) { StoreLe<uint32_t>(block.data() + kCrcOffset, BlockCrc(block)); }

Uuid LoadUuid(const std::byte* p) {
  Uuid uuid;
  std::memcpy(uuid.bytes.data(), p, uuid.bytes.size());
  return uuid;
}

// The values a reader must not trust even under a good checksum.
absl::Status ValidateHeader(const StoredHeader& h, uint64_t device_size) {
  if (absl::Status s = ValidateGeometry(h.geometry); !s.ok())
    return absl::DataLossError(absl::StrCat("impossible geometry: ", s.message()));
  const uint64_t n = h.layout.bitmap_blocks;
  if (n != BitmapBlocksFor(h.geometry.region_count))
    return absl::DataLossError(absl::StrCat("layout has ", n, " bitmap blocks; ",
                                            h.geometry.region_count, " regions need ",
                                            BitmapBlocksFor(h.geometry.region_count)));
  const uint64_t device_blocks = device_size / kMetadataBlockSize;
  for (int s = 0; s < 2; ++s) {
    const uint64_t start = h.layout.slot_start[s];
    if (start < kFirstBitmapBlock || start > device_blocks || n > device_blocks - start)
      return absl::DataLossError(
          absl::StrCat("bitmap slot array ", s == 0 ? "A" : "B", " (", n, " blocks from block ",
                       start, ") does not fit the device's ", device_blocks, " metadata blocks"));
  }
  const auto [low, high] = std::minmax(h.layout.slot_start[0], h.layout.slot_start[1]);
  if (n != 0 && high - low < n)
    return absl::DataLossError(absl::StrCat("bitmap slot arrays at blocks ", low, " and ", high,
                                            " overlap (", n, " blocks each)"));
  return absl::OkStatus();
}

}  // namespace

bool ChecksumMatches(ConstBlock block) {
  return LoadLe<uint32_t>(block.data() + kCrcOffset) == BlockCrc(block);
}

uint64_t BitmapBlocksFor(uint64_t region_count) {
  return region_count / kRegionsPerBitmapBlock + (region_count % kRegionsPerBitmapBlock != 0);
}

MetadataLayout StandardLayout(uint64_t region_count) {
  const uint64_t n = BitmapBlocksFor(region_count);
  return MetadataLayout{.bitmap_blocks = n,
                        .slot_start = {kFirstBitmapBlock, kFirstBitmapBlock + n}};
}

absl::Status ValidateGeometry(const CloneGeometry& geometry) {
  // The rules of a new clone, so that stored geometries obey exactly the same ones.
  DeviceInfo source;
  source.size = geometry.source_size;
  DeviceInfo dest;
  dest.size = geometry.dest_size;
  BLKCLONE_ASSIGN_OR_RETURN(const CloneGeometry derived,
                            MakeCloneGeometry(source, dest, geometry.region_size));
  if (derived.region_count != geometry.region_count)
    return absl::InvalidArgumentError(absl::StrCat(
        "region count ", geometry.region_count, " is not ceil(source size ", geometry.source_size,
        " / region size ", geometry.region_size, ") = ", derived.region_count));
  return absl::OkStatus();
}

void EncodeSuperblock(const StoredHeader& h, Block out) {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::byte* p = out.data();
  StoreLe<uint32_t>(p + kSbVersion, h.format_version);
  std::memcpy(p + kMagicOffset, kSuperblockMagic.data(), kSuperblockMagic.size());
  StoreLe<uint64_t>(p + kSbGeneration, h.generation);
  std::memcpy(p + kSbUuid, h.uuid.bytes.data(), h.uuid.bytes.size());
  StoreLe<uint64_t>(p + kSbCompat, h.compat_features);
  StoreLe<uint64_t>(p + kSbIncompat, h.incompat_features);
  StoreLe<uint32_t>(p + kSbNeedsCheck, h.needs_check ? 1 : 0);
  StoreLe<uint32_t>(p + kSbBlockSize, kMetadataBlockSize);
  StoreLe<uint64_t>(p + kSbRegionSize, h.geometry.region_size);
  StoreLe<uint64_t>(p + kSbRegionCount, h.geometry.region_count);
  StoreLe<uint64_t>(p + kSbSourceSize, h.geometry.source_size);
  StoreLe<uint64_t>(p + kSbDestSize, h.geometry.dest_size);
  StoreLe<uint64_t>(p + kSbBitmapBlocks, h.layout.bitmap_blocks);
  StoreLe<uint64_t>(p + kSbSlotStart, h.layout.slot_start[0]);
  StoreLe<uint64_t>(p + kSbSlotStart + 8, h.layout.slot_start[1]);
  StoreCrc(out);
}

absl::StatusOr<StoredHeader> DecodeSuperblock(ConstBlock block, int slot, uint64_t device_size) {
  const std::string where = absl::StrCat("superblock slot ", slot, " (metadata block ", slot, ")");
  if (AllZero(block)) return absl::NotFoundError(absl::StrCat(where, " is blank"));
  if (!HasMagic(block, kSuperblockMagic))
    return absl::FailedPreconditionError(
        absl::StrCat("not blkclone metadata: ", where, " has no blkclone magic"));
  if (!ChecksumMatches(block))
    return absl::DataLossError(absl::StrCat(where, ": checksum mismatch"));
  const std::byte* p = block.data();
  StoredHeader h;
  h.format_version = LoadLe<uint32_t>(p + kSbVersion);
  if (h.format_version != kFormatVersion)
    return absl::UnimplementedError(absl::StrCat(where, " is metadata format version ",
                                                 h.format_version, "; this build reads version ",
                                                 kFormatVersion));
  h.incompat_features = LoadLe<uint64_t>(p + kSbIncompat);
  if ((h.incompat_features & ~kKnownIncompatFeatures) != 0)
    return absl::UnimplementedError(absl::StrCat(
        where, " uses incompatible features 0x", absl::Hex(h.incompat_features),
        " that this build does not know (it knows 0x", absl::Hex(kKnownIncompatFeatures), ")"));
  const uint32_t needs_check = LoadLe<uint32_t>(p + kSbNeedsCheck);
  const uint32_t block_size = LoadLe<uint32_t>(p + kSbBlockSize);
  if (needs_check > 1 || block_size != kMetadataBlockSize)
    return absl::DataLossError(absl::StrCat(where, ": impossible needs_check ", needs_check,
                                            " or block size ", block_size));
  h.needs_check = needs_check == 1;
  h.generation = LoadLe<uint64_t>(p + kSbGeneration);
  h.uuid = LoadUuid(p + kSbUuid);
  h.compat_features = LoadLe<uint64_t>(p + kSbCompat);
  h.geometry = CloneGeometry{.source_size = LoadLe<uint64_t>(p + kSbSourceSize),
                             .dest_size = LoadLe<uint64_t>(p + kSbDestSize),
                             .region_size = LoadLe<uint64_t>(p + kSbRegionSize),
                             .region_count = LoadLe<uint64_t>(p + kSbRegionCount)};
  h.layout = MetadataLayout{
      .bitmap_blocks = LoadLe<uint64_t>(p + kSbBitmapBlocks),
      .slot_start = {LoadLe<uint64_t>(p + kSbSlotStart), LoadLe<uint64_t>(p + kSbSlotStart + 8)}};
  h.superblock_slot = slot;
  if (absl::Status s = ValidateHeader(h, device_size); !s.ok())
    return absl::DataLossError(absl::StrCat(where, ": ", s.message()));
  return h;
}

absl::StatusOr<StoredHeader> ChooseSuperblock(
    const std::array<absl::StatusOr<StoredHeader>, 2>& slots) {
  for (const auto& slot : slots) {
    // A newer writer may lay out everything else differently: trust neither slot.
    if (absl::IsUnimplemented(slot.status())) return slot.status();
  }
  const StoredHeader* best = nullptr;
  for (const auto& slot : slots) {
    if (slot.ok() && (best == nullptr || slot->generation > best->generation)) best = &*slot;
  }
  if (best != nullptr) {
    StoredHeader chosen = *best;
    for (const auto& slot : slots) {
      if (slot.ok() && slot->uuid == chosen.uuid && slot->generation == chosen.generation)
        chosen.needs_check |= slot->needs_check;
    }
    return chosen;
  }
  if (absl::IsNotFound(slots[0].status()) && absl::IsNotFound(slots[1].status()))
    return absl::NotFoundError("blank metadata device: both superblock slots are all zeroes");
  if (absl::IsDataLoss(slots[0].status()) || absl::IsDataLoss(slots[1].status()))
    return absl::DataLossError(absl::StrCat("no usable superblock: ", slots[0].status().message(),
                                            "; ", slots[1].status().message()));
  return absl::FailedPreconditionError(
      "not blkclone metadata: neither superblock slot has the blkclone magic; the device is "
      "left untouched");
}

uint64_t LoadBitmapWord(ConstBlock block, uint64_t index) {
  return LoadLe<uint64_t>(block.data() + kBitmapHeaderSize + 8 * index);
}

void StoreBitmapWord(Block block, uint64_t index, uint64_t word) {
  StoreLe<uint64_t>(block.data() + kBitmapHeaderSize + 8 * index, word);
}

void SealBitmapBlock(Block block, const Uuid& uuid, uint64_t index, uint64_t generation) {
  std::byte* p = block.data();
  std::fill(p, p + kBitmapHeaderSize, std::byte{0});
  std::memcpy(p + kMagicOffset, kBitmapMagic.data(), kBitmapMagic.size());
  StoreLe<uint64_t>(p + kBmGeneration, generation);
  std::memcpy(p + kBmUuid, uuid.bytes.data(), uuid.bytes.size());
  StoreLe<uint64_t>(p + kBmIndex, index);
  StoreCrc(block);
}

BitmapSlot InspectBitmapSlot(ConstBlock block, const Uuid& uuid, uint64_t index) {
  const std::byte* p = block.data();
  if (AllZero(block.first(kBitmapHeaderSize))) return {.kind = SlotKind::kBlank};
  if (!HasMagic(block, kBitmapMagic) || LoadUuid(p + kBmUuid) != uuid ||
      LoadLe<uint64_t>(p + kBmIndex) != index)
    return {.kind = SlotKind::kForeign};
  return {.kind = ChecksumMatches(block) ? SlotKind::kValid : SlotKind::kDamaged,
          .generation = LoadLe<uint64_t>(p + kBmGeneration)};
}

BitmapChoice ChooseBitmapSlot(const std::array<BitmapSlot, 2>& slots, uint64_t generation) {
  BitmapChoice choice;
  for (int s = 0; s < 2; ++s) {
    const BitmapSlot& slot = slots[s];
    if (slot.kind == SlotKind::kValid && slot.generation <= generation &&
        (choice.slot == kNoSlot || slot.generation > slots[choice.slot].generation))
      choice.slot = s;
  }
  const uint64_t chosen_generation = choice.slot == kNoSlot ? 0 : slots[choice.slot].generation;
  for (int s = 0; s < 2; ++s) {
    if (s == choice.slot) continue;
    const BitmapSlot& slot = slots[s];
    if (slot.kind == SlotKind::kForeign) {
      // Torn writes keep the 64-byte header whole (sectors are atomic): this is damage,
      // and of unknown age, so it may have been the committed version.
      choice.damage = "holds data that is not a block of this metadata";
      choice.damaged_slot = s;
    } else if (slot.kind == SlotKind::kDamaged && slot.generation <= generation &&
               (choice.slot == kNoSlot || slot.generation > chosen_generation)) {
      choice.damage = "fails its checksum but holds the latest committed version";
      choice.damaged_slot = s;
    } else if (slot.kind != SlotKind::kBlank && slot.generation > generation) {
      if (choice.rewrite_slot == kNoSlot) {
        choice.rewrite_slot = s;
      } else {
        choice.damage =
            "holds a version newer than the superblock, as does the other slot: "
            "the superblock has lost a commit";
        choice.damaged_slot = s;
      }
    }
  }
  return choice;
}

}  // namespace blkclone::internal

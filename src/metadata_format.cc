// Superblock and bitmap block encoding, validation and slot choice. Every
// multi-byte field is little-endian; the offsets below are those of
// docs/metadata-format.md.
#include "blkclone/internal/metadata_format.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
constexpr size_t kSbSlotStart = 104;  // one u64 per slot array, in slot order

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
  const uint64_t first = SuperblockSlots(h.format_version);
  const int slots = h.layout.slots();
  for (int s = 0; s < slots; ++s) {
    const uint64_t start = h.layout.slot_start[s];
    if (start < first || start > device_blocks || n > device_blocks - start)
      return absl::DataLossError(absl::StrCat(
          "bitmap slot array ", SlotName(s, h.layout.copies), " (", n, " blocks from block ", start,
          ") does not fit the device's ", device_blocks, " metadata blocks"));
  }
  std::array<uint64_t, kMaxSlots> starts = h.layout.slot_start;
  std::fill(starts.begin() + slots, starts.end(), UINT64_MAX);  // unused slots sort last
  std::sort(starts.begin(), starts.end());
  for (int s = 1; s < slots; ++s) {
    if (n != 0 && starts[s] - starts[s - 1] < n)
      return absl::DataLossError(absl::StrCat("bitmap slot arrays at blocks ", starts[s - 1],
                                              " and ", starts[s], " overlap (", n,
                                              " blocks each)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string SlotName(int slot, int copies) {
  std::string name(1, static_cast<char>('A' + PairOf(slot, copies)));
  if (copies > 1) absl::StrAppend(&name, slot % copies + 1);
  return name;
}

bool ChecksumMatches(ConstBlock block) {
  return LoadLe<uint32_t>(block.data() + kCrcOffset) == BlockCrc(block);
}

uint64_t BitmapBlocksFor(uint64_t region_count) {
  return region_count / kRegionsPerBitmapBlock + (region_count % kRegionsPerBitmapBlock != 0);
}

namespace {

// `copies` pairs of slot arrays, back to back from block `first`.
MetadataLayout ArraysFrom(uint64_t first, uint64_t n, int copies) {
  MetadataLayout layout{.bitmap_blocks = n, .copies = copies};
  for (int s = 0; s < layout.slots(); ++s) layout.slot_start[s] = first + s * n;
  return layout;
}

}  // namespace

MetadataLayout StandardLayout(uint64_t region_count, uint32_t format_version) {
  return ArraysFrom(SuperblockSlots(format_version), BitmapBlocksFor(region_count),
                    CopiesIn(format_version));
}

uint64_t LayoutEnd(const MetadataLayout& layout, uint32_t format_version) {
  uint64_t end = SuperblockSlots(format_version);
  for (int s = 0; s < layout.slots(); ++s)
    end = std::max(end, layout.slot_start[s] + layout.bitmap_blocks);
  return end * kMetadataBlockSize;
}

absl::StatusOr<MetadataLayout> UpgradeLayout(const StoredHeader& header, uint64_t device_size) {
  const uint64_t first = LayoutEnd(header.layout, header.format_version) / kMetadataBlockSize;
  const MetadataLayout layout =
      ArraysFrom(std::max<uint64_t>(first, SuperblockSlots(kFormatVersion)),
                 header.layout.bitmap_blocks, CopiesIn(kFormatVersion));
  const uint64_t needed = LayoutEnd(layout, kFormatVersion);
  if (device_size < needed)
    return absl::ResourceExhaustedError(absl::StrCat("upgrading to format ", kFormatVersion,
                                                     " in place needs a metadata device of ",
                                                     needed, " bytes; this one has ", device_size));
  return layout;
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
  for (int s = 0; s < SuperblockSlots(h.format_version); ++s)
    StoreLe<uint64_t>(p + kSbSlotStart + 8 * s, h.layout.slot_start[s]);
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
  if (h.format_version < kOldestFormatVersion || h.format_version > kFormatVersion)
    return absl::UnimplementedError(absl::StrCat(where, " is metadata format version ",
                                                 h.format_version, "; this build reads versions ",
                                                 kOldestFormatVersion, " to ", kFormatVersion));
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
  h.layout = MetadataLayout{.bitmap_blocks = LoadLe<uint64_t>(p + kSbBitmapBlocks),
                            .copies = CopiesIn(h.format_version)};
  for (int s = 0; s < h.layout.slots(); ++s)
    h.layout.slot_start[s] = LoadLe<uint64_t>(p + kSbSlotStart + 8 * s);
  h.superblock_slot = slot;
  if (absl::Status s = ValidateHeader(h, device_size); !s.ok())
    return absl::DataLossError(absl::StrCat(where, ": ", s.message()));
  return h;
}

absl::StatusOr<StoredHeader> ChooseSuperblock(std::span<const absl::StatusOr<StoredHeader>> slots) {
  for (const auto& slot : slots) {
    // A newer writer may lay out everything else differently: trust no slot.
    if (absl::IsUnimplemented(slot.status())) return slot.status();
  }
  // Format 2 copies win over format 1 ones, which an upgrade leaves behind.
  uint32_t version = 1;
  for (const auto& slot : slots) {
    if (slot.ok()) version = std::max(version, slot->format_version);
  }
  const int count = std::min<int>(SuperblockSlots(version), static_cast<int>(slots.size()));
  const int copies = CopiesIn(version);
  auto usable = [&](int s) { return slots[s].ok() && slots[s]->format_version == version; };
  const StoredHeader* best = nullptr;
  for (int s = 0; s < count; ++s) {
    if (usable(s) && (best == nullptr || slots[s]->generation > best->generation))
      best = &*slots[s];
  }
  if (best != nullptr) {
    StoredHeader chosen = *best;
    auto same = [&](int s) {
      return usable(s) && slots[s]->uuid == chosen.uuid &&
             slots[s]->generation == chosen.generation;
    };
    std::array<int, 2> copies_in_pair{};
    for (int s = 0; s < count; ++s) {
      if (!same(s)) continue;
      chosen.needs_check |= slots[s]->needs_check;
      ++copies_in_pair[PairOf(s, copies)];
    }
    const int pair = copies_in_pair[1] > copies_in_pair[0] ? 1 : 0;
    for (int s = pair * copies; s < (pair + 1) * copies; ++s) {
      if (same(s)) {
        chosen.superblock_slot = s;
        break;
      }
    }
    chosen.superblock_copies = copies_in_pair[pair];
    return chosen;
  }
  auto any = [&](auto predicate) {
    return std::any_of(slots.begin(), slots.end(),
                       [&](const auto& slot) { return predicate(slot.status()); });
  };
  if (any(absl::IsDataLoss)) {
    std::vector<absl::string_view> reasons;
    for (const auto& slot : slots) {
      // A valid format 1 superblock beyond format 1's slots is no failure.
      if (!slot.ok()) reasons.push_back(slot.status().message());
    }
    return absl::DataLossError(
        absl::StrCat("no usable superblock: ", absl::StrJoin(reasons, "; ")));
  }
  // Slots 2 and 3 may hold the bitmap of format 1 metadata whose superblocks were wiped.
  if (absl::IsNotFound(slots[0].status()) && absl::IsNotFound(slots[1].status()))
    return absl::NotFoundError("blank metadata device: superblock slots 0 and 1 are all zeroes");
  return absl::FailedPreconditionError(
      "not blkclone metadata: no superblock slot has the blkclone magic; the device is "
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

BitmapChoice ChooseBitmapSlot(std::span<const BitmapSlot> slots, uint64_t generation) {
  const int count = static_cast<int>(slots.size());
  const int copies = count / 2;
  BitmapChoice choice;
  for (int s = 0; s < count; ++s) {
    const BitmapSlot& slot = slots[s];
    if (slot.kind == SlotKind::kValid && slot.generation <= generation &&
        (choice.slot == kNoSlot || slot.generation > slots[choice.slot].generation))
      choice.slot = s;
  }
  const bool committed = choice.slot != kNoSlot;
  const uint64_t chosen_generation = committed ? slots[choice.slot].generation : 0;
  const int current_pair = committed ? PairOf(choice.slot, copies) : kNoSlot;
  std::array<bool, 2> newer{};
  int suspects = 0;
  for (int s = 0; s < count; ++s) {
    if (s == choice.slot) continue;
    const BitmapSlot& slot = slots[s];
    const bool has_generation = slot.kind == SlotKind::kValid || slot.kind == SlotKind::kDamaged;
    absl::string_view suspicion;
    if (PairOf(s, copies) == current_pair) {
      // Both copies of a version are written before the superblock that commits it.
      if (slot.kind != SlotKind::kValid || slot.generation != chosen_generation)
        suspicion = "is not a copy of the committed version its twin holds";
    } else if (slot.kind == SlotKind::kForeign) {
      // Torn writes keep the 64-byte header whole (sectors are atomic): this is damage,
      // and of unknown age, so it may have been the committed version.
      suspicion = "holds data that is not a block of this metadata";
    } else if (slot.kind == SlotKind::kDamaged && slot.generation <= generation &&
               slot.generation > chosen_generation) {
      suspicion = "fails its checksum but holds the latest committed version";
    } else if (has_generation && slot.generation > generation) {
      newer[PairOf(s, copies)] = true;
    }
    if (suspicion.empty()) continue;
    if (++suspects >= copies) {
      choice.damage = suspicion;
      choice.damaged_slot = s;
    } else {
      choice.suspicion = suspicion;
      choice.suspect_slot = s;
    }
  }
  if (committed) {
    choice.write_pair = 1 - current_pair;
  } else if (newer[0] && newer[1]) {
    // An interrupted commit writes one pair, and a retry the same one.
    choice.damage =
        "holds a version newer than the superblock, as does the other pair: the superblock has "
        "lost a commit";
    choice.damaged_slot = 0;
  } else if (newer[0]) {
    choice.write_pair = 0;
  }
  choice.interrupted = newer[choice.write_pair];
  if (!choice.damage.empty()) {
    choice.suspect_slot = kNoSlot;
    choice.suspicion = {};
  }
  return choice;
}

}  // namespace blkclone::internal

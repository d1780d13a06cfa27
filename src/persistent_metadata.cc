// PersistentMetadata: transactions of bitmap blocks over the format of
// metadata_format.hpp. Dirty tracking is per bitmap block (bits only go 0 -> 1,
// so a block's current words are all a commit needs); a sealed block changed
// before it is written is snapshotted first, so a commit never persists a mark
// made after its seal (invariant I1).
#include "blkclone/persistent_metadata.hpp"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/internal/metadata_io.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"

namespace blkclone {
namespace {

using internal::BitmapBlockView;
using internal::BlockBuffer;
using internal::kRegionsPerBitmapBlock;
using internal::kWordsPerBitmapBlock;

// State bits of one bitmap block.
enum BlockFlags : uint8_t {
  kNextInPairA = 1 << 0,  // the next version goes to pair A (else B): BitmapChoice::write_pair
  kDirty = 1 << 1,        // marked since the last Seal
  kSealed = 1 << 2,       // sealed and not yet committed
  kSlotUsed = 1 << 3,     // shifted by the slot: it has been written (for usage())
};

uint8_t UsedFlag(int slot) { return static_cast<uint8_t>(kSlotUsed << slot); }
int NextPair(uint8_t flags) { return (flags & kNextInPairA) != 0 ? 0 : 1; }

// The damaged blocks named in an error; the rest are only counted.
constexpr size_t kNamedBlocks = 8;

absl::Status CompareGeometry(const CloneGeometry& stored, const CloneGeometry& wanted) {
  struct Field {
    const char* name;
    uint64_t CloneGeometry::*member;
  };
  for (const Field& f : {Field{"region size", &CloneGeometry::region_size},
                         Field{"source size", &CloneGeometry::source_size},
                         Field{"destination size", &CloneGeometry::dest_size},
                         Field{"region count", &CloneGeometry::region_count}}) {
    if (stored.*f.member != wanted.*f.member)
      return absl::FailedPreconditionError(absl::StrCat("geometry mismatch: the metadata has ",
                                                        f.name, " ", stored.*f.member, " but ",
                                                        wanted.*f.member,
                                                        " was asked for; refusing to reuse another "
                                                        "clone's metadata"));
  }
  return absl::OkStatus();
}

absl::Status NeedsCheckError() {
  return absl::FailedPreconditionError(
      "the metadata needs a check: damage was found (needs_check is set); run `blkclone check`, "
      "and `blkclone check --repair` if it finds problems, or open it read-only");
}

// The live words of bitmap block `block`.
std::vector<uint64_t> BlockWords(const RegionMap& map, uint64_t block) {
  std::vector<uint64_t> words(internal::WordsInBlock(map.size(), block));
  for (uint64_t w = 0; w < words.size(); ++w) words[w] = map.Word(block * kWordsPerBitmapBlock + w);
  return words;
}

// Formats a blank device: zeroes the slot arrays, so that nothing left from an
// earlier use passes for a bitmap block, then writes generation 0 into every
// superblock slot, so that damage to one slot never makes the device look blank.
absl::StatusOr<StoredHeader> Format(AnyBlockDevice& device, const CloneGeometry& geometry,
                                    const Uuid& uuid, uint32_t format_version) {
  const int slots = internal::SuperblockSlots(format_version);
  StoredHeader header{.format_version = format_version,
                      .uuid = uuid,
                      .generation = 0,
                      .geometry = geometry,
                      .layout = internal::StandardLayout(geometry.region_count, format_version),
                      .superblock_copies = internal::CopiesIn(format_version)};
  BLKCLONE_RETURN_IF_ERROR(
      internal::ZeroBlocks(device, slots, header.layout.slots() * header.layout.bitmap_blocks));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblocks(device, 0, slots, header));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  return header;
}

// Rewrites format 1 metadata as format 2 with the same content, in `layout`
// (internal::UpgradeLayout): writes the committed bitmap into both copies of
// pair A, flushes, writes the format 2 superblock into the format 1 slot that
// does not hold the current superblock, flushes, then into the other slots,
// flushes. Until the second flush format 1 reads its state unchanged; from then
// on format 2 reads the same state, from at least one copy until the third.
absl::StatusOr<StoredHeader> Upgrade(AnyBlockDevice& device, const StoredHeader& old,
                                     const RegionMap& map, const MetadataLayout& layout) {
  StoredHeader next = old;
  next.format_version = internal::kFormatVersion;
  next.layout = layout;
  ++next.generation;
  const uint64_t n = layout.bitmap_blocks;
  BLKCLONE_RETURN_IF_ERROR(internal::ZeroBlocks(device, layout.slot_start[0], layout.slots() * n));
  std::vector<uint64_t> blocks;
  for (uint64_t block = 0; block < n; ++block) {
    const std::vector<uint64_t> words = BlockWords(map, block);
    if (std::any_of(words.begin(), words.end(), [](uint64_t w) { return w != 0; }))
      blocks.push_back(block);
  }
  BLKCLONE_RETURN_IF_ERROR(internal::WriteBitmapVersions(
      device, next, blocks, [](size_t) { return 0; },
      [&](size_t i, internal::Block out) {
        const std::vector<uint64_t> words = BlockWords(map, blocks[i]);
        for (uint64_t w = 0; w < words.size(); ++w) internal::StoreBitmapWord(out, w, words[w]);
      }));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  const int current = old.superblock_slot;
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblocks(device, 1 - current, 1, next));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblocks(device, current, 1, next));
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblocks(device, 2, 2, next));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  next.superblock_slot = 0;
  next.superblock_copies = layout.copies;
  return next;
}

}  // namespace

Uuid Uuid::Random() {
  std::random_device entropy;
  Uuid uuid;
  for (size_t i = 0; i < uuid.bytes.size(); i += 4) {
    const uint32_t r = entropy();
    for (size_t k = 0; k < 4; ++k) uuid.bytes[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  uuid.bytes[6] = static_cast<uint8_t>((uuid.bytes[6] & 0x0f) | 0x40);  // version 4
  uuid.bytes[8] = static_cast<uint8_t>((uuid.bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return uuid;
}

std::string Uuid::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += kHex[bytes[i] >> 4];
    text += kHex[bytes[i] & 0xf];
  }
  return text;
}

struct PersistentMetadata::Loaded {
  std::unique_ptr<RegionMap> map;
  std::vector<uint8_t> blocks = {};  // BlockFlags
  // Blocks the next commit writes even if unchanged: their write pair holds an
  // interrupted commit's version, or one of their slots is suspect or damaged.
  std::vector<uint64_t> rewrite = {};
  bool repair = false;  // some block lost a copy of its committed version
  uint64_t used_slots = 0;

  static Loaded Empty(const CloneGeometry& geometry) {
    return Loaded{
        .map = std::make_unique<RegionMap>(geometry.region_count),
        .blocks = std::vector<uint8_t>(internal::BitmapBlocksFor(geometry.region_count), 0)};
  }
};

uint64_t PersistentMetadata::RequiredSize(const CloneGeometry& geometry, uint32_t format_version) {
  return internal::LayoutEnd(internal::StandardLayout(geometry.region_count, format_version),
                             format_version);
}

absl::StatusOr<StoredHeader> PersistentMetadata::ReadHeader(AnyBlockDevice& device) {
  BLKCLONE_ASSIGN_OR_RETURN(auto slots, internal::ReadSuperblocks(device));
  return internal::ChooseSuperblock(slots);
}

absl::StatusOr<std::unique_ptr<PersistentMetadata>> PersistentMetadata::Open(
    AnyBlockDevice device, const CloneGeometry& geometry, const OpenOptions& options) {
  BLKCLONE_RETURN_IF_ERROR(internal::ValidateGeometry(geometry));
  BLKCLONE_RETURN_IF_ERROR(internal::CheckDevice(device.info()));
  const bool writable = !options.read_only;
  const uint32_t version =
      std::clamp(options.format_version, internal::kOldestFormatVersion, internal::kFormatVersion);
  absl::StatusOr<StoredHeader> header = ReadHeader(device);
  if (absl::IsNotFound(header.status()) || absl::IsInvalidArgument(header.status())) {
    const uint64_t required = RequiredSize(geometry, version);
    if (device.info().size < required)
      return absl::InvalidArgumentError(
          absl::StrCat("metadata device too small: it has ", device.info().size, " bytes, but ",
                       geometry.region_count, " regions need at least ", required, " bytes"));
  }
  if (absl::IsNotFound(header.status())) {
    if (!writable || !options.format_if_blank)
      return absl::NotFoundError(
          absl::StrCat(header.status().message(), "; not formatting it (",
                       writable ? "format_if_blank is off" : "read-only open", ")"));
    BLKCLONE_ASSIGN_OR_RETURN(
        StoredHeader formatted,
        Format(device, geometry, options.format_uuid ? *options.format_uuid : Uuid::Random(),
               version));
    return std::unique_ptr<PersistentMetadata>(new PersistentMetadata(
        std::move(device), formatted, /*read_only=*/false, Loaded::Empty(geometry)));
  }
  if (!header.ok()) return header.status();
  BLKCLONE_RETURN_IF_ERROR(CompareGeometry(header->geometry, geometry));
  if (header->needs_check && writable && !options.repair) return NeedsCheckError();
  BLKCLONE_ASSIGN_OR_RETURN(Loaded loaded, Load(device, *header, writable, options.repair));
  if (writable && header->format_version < version) {
    // Without room for format 2 the metadata stays in format 1 (Check says so).
    if (absl::StatusOr<MetadataLayout> layout =
            internal::UpgradeLayout(*header, device.info().size);
        layout.ok()) {
      BLKCLONE_ASSIGN_OR_RETURN(*header, Upgrade(device, *header, *loaded.map, *layout));
      BLKCLONE_ASSIGN_OR_RETURN(loaded, Load(device, *header, writable, options.repair));
    }
  }
  const bool rewrite = writable && (options.repair || loaded.repair);
  std::unique_ptr<PersistentMetadata> meta(
      new PersistentMetadata(std::move(device), *header, options.read_only, std::move(loaded)));
  if (rewrite) BLKCLONE_RETURN_IF_ERROR(meta->Rewrite());
  return meta;
}

absl::StatusOr<PersistentMetadata::Loaded> PersistentMetadata::Load(AnyBlockDevice& device,
                                                                    const StoredHeader& header,
                                                                    bool writable, bool repair) {
  Loaded loaded = Loaded::Empty(header.geometry);
  loaded.repair = header.superblock_copies < header.layout.copies;
  std::vector<std::string> named;
  uint64_t damaged = 0;
  BLKCLONE_RETURN_IF_ERROR(
      internal::ForEachBitmapBlock(device, header, [&](const BitmapBlockView& view) {
        uint8_t& flags = loaded.blocks[view.index];
        for (int s = 0; s < view.count; ++s) {
          if (view.kinds[s].kind == internal::SlotKind::kBlank) continue;
          flags |= UsedFlag(s);
          ++loaded.used_slots;
        }
        const internal::BitmapChoice& choice = view.choice;
        if (!choice.damage.empty()) {
          if (damaged++ < kNamedBlocks) named.push_back(internal::DescribeDamage(header, view));
          if (!repair) return absl::OkStatus();
        }
        if (choice.write_pair == 0) flags |= kNextInPairA;
        if (choice.MustRewrite() || !choice.damage.empty()) loaded.rewrite.push_back(view.index);
        loaded.repair |= choice.suspect_slot != internal::kNoSlot;
        if (choice.slot == internal::kNoSlot) return absl::OkStatus();  // all zeroes
        const uint64_t base = view.index * kWordsPerBitmapBlock;
        const uint64_t words = internal::WordsInBlock(header.geometry.region_count, view.index);
        for (uint64_t w = 0; w < words; ++w) {
          if (const uint64_t word = view.Word(w); word != 0) loaded.map->OrWord(base + w, word);
        }
        return absl::OkStatus();
      }));
  if (damaged == 0 || repair) return loaded;
  std::string message =
      absl::StrCat(damaged, " damaged bitmap block(s): ", absl::StrJoin(named, "; "),
                   damaged > named.size() ? "; ..." : "",
                   ". Run `blkclone check`, and `blkclone check --repair` to accept the loss.");
  if (writable) {
    // Into the pair that does not hold the current superblock, at the same
    // generation: a torn write there cannot cost the committed state.
    StoredHeader marked = header;
    marked.needs_check = true;
    absl::Status status = internal::WriteSuperblockPair(
        device, 1 - internal::PairOf(header.superblock_slot, header.layout.copies), marked);
    if (status.ok()) status = Flush(device);
    if (!status.ok())
      absl::StrAppend(&message, " Recording needs_check failed: ", status.message());
  }
  return absl::DataLossError(message);
}

PersistentMetadata::PersistentMetadata(AnyBlockDevice device, const StoredHeader& header,
                                       bool read_only, Loaded loaded)
    : geometry_(header.geometry),
      read_only_(read_only),
      total_blocks_(device.info().size / kMetadataBlockSize),
      device_(std::move(device)) {
  internal::MutexLock lock(mu_);
  Install(header, std::move(loaded));
}

void PersistentMetadata::Install(const StoredHeader& header, Loaded loaded) {
  header_ = header;
  maps_.push_back(std::move(loaded.map));
  map_.store(maps_.back().get(), std::memory_order_release);
  blocks_ = std::move(loaded.blocks);
  used_slots_ = loaded.used_slots;
  dirty_.clear();
  sealed_.clear();
  snapshots_.clear();
  if (read_only_) return;
  // Committed content, so writing it needs no destination flush.
  for (uint64_t block : loaded.rewrite) {
    blocks_[block] |= kSealed;
    sealed_.push_back(block);
  }
}

void PersistentMetadata::MarkHydrated(uint64_t first, uint64_t count) {
  const uint64_t regions = geometry_.region_count;
  if (first >= regions || count == 0) return;
  const uint64_t last = first + std::min(count, regions - first) - 1;
  internal::MutexLock lock(mu_);
  RegionMap& map = *maps_.back();
  for (uint64_t block = first / kRegionsPerBitmapBlock; block <= last / kRegionsPerBitmapBlock;
       ++block) {
    uint8_t& flags = blocks_[block];
    if ((flags & kSealed) != 0 && !snapshots_.contains(block))
      snapshots_.emplace(block, BlockWords(map, block));
    if ((flags & kDirty) == 0) {
      flags |= kDirty;
      dirty_.push_back(block);
    }
  }
  map.SetRange(first, count);
}

void PersistentMetadata::Seal() {
  internal::MutexLock lock(mu_);
  for (uint64_t block : dirty_) {
    uint8_t& flags = blocks_[block];
    flags &= ~kDirty;
    if ((flags & kSealed) == 0) {
      flags |= kSealed;
      sealed_.push_back(block);
    }
  }
  dirty_.clear();
  // Every mark so far belongs to this seal, so the live words are what it took.
  snapshots_.clear();
}

absl::Status PersistentMetadata::CommitSealed() {
  internal::MutexLock commit_lock(commit_mu_);
  StoredHeader next;
  {
    internal::MutexLock lock(mu_);
    next = header_;
  }
  return Commit(std::move(next), /*always=*/false);
}

absl::Status PersistentMetadata::SetFinished() {
  internal::MutexLock commit_lock(commit_mu_);
  StoredHeader next;
  {
    internal::MutexLock lock(mu_);
    next = header_;
  }
  if (const RegionMap& regions = map(); !regions.AllSet())
    return absl::FailedPreconditionError(
        absl::StrCat("not fully hydrated: ", regions.size() - regions.CountSet(), " of ",
                     regions.size(), " regions remain"));
  next.compat_features |= kFeatureFinished;
  return Commit(std::move(next), /*always=*/true);
}

absl::Status PersistentMetadata::Rewrite() {
  internal::MutexLock commit_lock(commit_mu_);
  StoredHeader next;
  {
    internal::MutexLock lock(mu_);
    next = header_;
  }
  next.needs_check = false;
  return Commit(std::move(next), /*always=*/true);
}

absl::Status PersistentMetadata::Commit(StoredHeader next, bool always) {
  std::vector<uint64_t> blocks;
  {
    internal::MutexLock lock(mu_);
    if (!damage_.ok()) return NeedsCheckError();
    blocks = sealed_;
  }
  if (blocks.empty() && !always) return absl::OkStatus();
  if (read_only_) return absl::FailedPreconditionError("metadata is open read-only");
  // A retry after a failure reuses the same generation and pairs, so the
  // current superblock is never overwritten while it is the only complete one.
  const int copies = next.layout.copies;
  const int pair = 1 - internal::PairOf(next.superblock_slot, copies);
  ++next.generation;
  next.superblock_slot = pair * copies;
  next.superblock_copies = copies;
  std::sort(blocks.begin(), blocks.end());
  if (!blocks.empty()) {
    BLKCLONE_RETURN_IF_ERROR(WriteBitmapBlocks(blocks, next));
    BLKCLONE_RETURN_IF_ERROR(Flush(device_));
  }
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblockPair(device_, pair, next));
  BLKCLONE_RETURN_IF_ERROR(Flush(device_));

  internal::MutexLock lock(mu_);
  for (uint64_t block : blocks) {
    uint8_t& flags = blocks_[block];
    for (int copy = 0; copy < copies; ++copy) {
      const uint8_t used = UsedFlag(NextPair(flags) * copies + copy);
      if ((flags & used) == 0) ++used_slots_;
      flags |= used;
    }
    flags &= ~kSealed;
    flags ^= kNextInPairA;  // the version just written is now the committed one
    snapshots_.erase(block);
  }
  std::erase_if(sealed_, [&](uint64_t block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (blocks_[block] & kSealed) == 0;
  });
  header_ = next;
  return absl::OkStatus();
}

absl::Status PersistentMetadata::WriteBitmapBlocks(const std::vector<uint64_t>& blocks,
                                                   const StoredHeader& next) {
  return internal::WriteBitmapVersions(
      device_, next, blocks,
      [&](size_t i) {
        internal::MutexLock lock(mu_);
        return NextPair(blocks_[blocks[i]]);
      },
      [&](size_t i, internal::Block out) {
        internal::MutexLock lock(mu_);
        const uint64_t block = blocks[i];
        const auto snapshot = snapshots_.find(block);
        const RegionMap& map = *maps_.back();
        const uint64_t words = internal::WordsInBlock(geometry_.region_count, block);
        for (uint64_t w = 0; w < words; ++w) {
          internal::StoreBitmapWord(out, w,
                                    snapshot != snapshots_.end()
                                        ? snapshot->second[w]
                                        : map.Word(block * kWordsPerBitmapBlock + w));
        }
      });
}

absl::Status PersistentMetadata::ReloadCommitted() {
  internal::MutexLock commit_lock(commit_mu_);
  // What a failed commit left in the device's cache is read back below; make it
  // durable first so that the next commit builds on what a crash would keep.
  if (!read_only_) BLKCLONE_RETURN_IF_ERROR(Flush(device_));
  BLKCLONE_ASSIGN_OR_RETURN(StoredHeader header, ReadHeader(device_));
  Uuid uuid;
  {
    internal::MutexLock lock(mu_);
    uuid = header_.uuid;
  }
  if (header.uuid != uuid || header.geometry != geometry_)
    return absl::DataLossError(absl::StrCat("the metadata device now holds other metadata (uuid ",
                                            header.uuid.ToString(), ", expected ", uuid.ToString(),
                                            ")"));
  absl::StatusOr<Loaded> loaded = header.needs_check && !read_only_
                                      ? NeedsCheckError()
                                      : Load(device_, header, !read_only_, /*repair=*/false);
  internal::MutexLock lock(mu_);
  if (!loaded.ok()) {
    damage_ = loaded.status();
    return loaded.status();
  }
  Install(header, std::move(*loaded));
  return absl::OkStatus();
}

MetadataUsage PersistentMetadata::usage() const {
  internal::MutexLock lock(mu_);
  return MetadataUsage{
      .block_size = kMetadataBlockSize,
      .used_blocks = internal::SuperblockSlots(header_.format_version) + used_slots_,
      .total_blocks = total_blocks_};
}

void PersistentMetadata::ReleaseMapIfComplete() {
  internal::MutexLock lock(mu_);
  maps_.back()->ReleaseIfComplete();
}

bool PersistentMetadata::finished() const {
  internal::MutexLock lock(mu_);
  return header_.finished();
}

Uuid PersistentMetadata::uuid() const {
  internal::MutexLock lock(mu_);
  return header_.uuid;
}

uint64_t PersistentMetadata::generation() const {
  internal::MutexLock lock(mu_);
  return header_.generation;
}

uint32_t PersistentMetadata::format_version() const {
  internal::MutexLock lock(mu_);
  return header_.format_version;
}

}  // namespace blkclone

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
  kNextInA = 1 << 0,    // the next version goes to slot A (else B): see BitmapChoice::WriteSlot
  kSlotAUsed = 1 << 1,  // slot A has been written (for usage())
  kSlotBUsed = 1 << 2,
  kDirty = 1 << 3,   // marked since the last Seal
  kSealed = 1 << 4,  // sealed and not yet committed
};

uint8_t UsedFlag(int slot) { return slot == 0 ? kSlotAUsed : kSlotBUsed; }
int NextSlot(uint8_t flags) { return (flags & kNextInA) != 0 ? 0 : 1; }

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
      "which clears the flag once the metadata verifies, or open it read-only");
}

// The live words of bitmap block `block`.
std::vector<uint64_t> BlockWords(const RegionMap& map, uint64_t block) {
  std::vector<uint64_t> words(internal::WordsInBlock(map.size(), block));
  for (uint64_t w = 0; w < words.size(); ++w) words[w] = map.Word(block * kWordsPerBitmapBlock + w);
  return words;
}

// Formats a blank device: zeroes both slot arrays, so that nothing left from an
// earlier use passes for a bitmap block, then writes generation 0 into both
// superblock slots, so that damage to one slot never makes the device look blank.
absl::StatusOr<StoredHeader> Format(AnyBlockDevice& device, const CloneGeometry& geometry,
                                    const Uuid& uuid) {
  const StoredHeader header{.format_version = internal::kFormatVersion,
                            .uuid = uuid,
                            .generation = 0,
                            .geometry = geometry,
                            .layout = internal::StandardLayout(geometry.region_count)};
  BLKCLONE_RETURN_IF_ERROR(
      internal::ZeroBlocks(device, internal::kFirstBitmapBlock, 2 * header.layout.bitmap_blocks));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  BlockBuffer superblocks(2, device.info());
  internal::EncodeSuperblock(header, superblocks.block(0));
  internal::EncodeSuperblock(header, superblocks.block(1));
  BLKCLONE_RETURN_IF_ERROR(WriteAt(device, 0, superblocks.blocks(0, 2)));
  BLKCLONE_RETURN_IF_ERROR(Flush(device));
  return header;
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
  std::vector<uint8_t> blocks = {};    // BlockFlags
  std::vector<uint64_t> rewrite = {};  // blocks whose free slot holds an interrupted commit
  uint64_t used_slots = 0;

  static Loaded Empty(const CloneGeometry& geometry) {
    return Loaded{
        .map = std::make_unique<RegionMap>(geometry.region_count),
        .blocks = std::vector<uint8_t>(internal::BitmapBlocksFor(geometry.region_count), 0)};
  }
};

uint64_t PersistentMetadata::RequiredSize(const CloneGeometry& geometry) {
  return (internal::kFirstBitmapBlock + 2 * internal::BitmapBlocksFor(geometry.region_count)) *
         kMetadataBlockSize;
}

absl::StatusOr<StoredHeader> PersistentMetadata::ReadHeader(AnyBlockDevice& device) {
  BLKCLONE_ASSIGN_OR_RETURN(auto slots, internal::ReadSuperblocks(device));
  return internal::ChooseSuperblock(slots);
}

absl::StatusOr<std::unique_ptr<PersistentMetadata>> PersistentMetadata::Open(
    AnyBlockDevice device, const CloneGeometry& geometry, const OpenOptions& options) {
  BLKCLONE_RETURN_IF_ERROR(internal::ValidateGeometry(geometry));
  BLKCLONE_RETURN_IF_ERROR(internal::CheckDevice(device.info()));
  const uint64_t required = RequiredSize(geometry);
  if (device.info().size < required)
    return absl::InvalidArgumentError(
        absl::StrCat("metadata device too small: it has ", device.info().size, " bytes, but ",
                     geometry.region_count, " regions need at least ", required, " bytes"));
  const bool writable = !options.read_only;
  absl::StatusOr<StoredHeader> header = ReadHeader(device);
  if (absl::IsNotFound(header.status())) {
    if (!writable || !options.format_if_blank)
      return absl::NotFoundError(
          absl::StrCat(header.status().message(), "; not formatting it (",
                       writable ? "format_if_blank is off" : "read-only open", ")"));
    BLKCLONE_ASSIGN_OR_RETURN(
        StoredHeader formatted,
        Format(device, geometry, options.format_uuid ? *options.format_uuid : Uuid::Random()));
    return std::unique_ptr<PersistentMetadata>(new PersistentMetadata(
        std::move(device), formatted, /*read_only=*/false, Loaded::Empty(geometry)));
  }
  if (!header.ok()) return header.status();
  BLKCLONE_RETURN_IF_ERROR(CompareGeometry(header->geometry, geometry));
  if (header->needs_check && writable) return NeedsCheckError();
  BLKCLONE_ASSIGN_OR_RETURN(Loaded loaded, Load(device, *header, writable));
  return std::unique_ptr<PersistentMetadata>(
      new PersistentMetadata(std::move(device), *header, options.read_only, std::move(loaded)));
}

absl::StatusOr<PersistentMetadata::Loaded> PersistentMetadata::Load(AnyBlockDevice& device,
                                                                    const StoredHeader& header,
                                                                    bool writable) {
  Loaded loaded = Loaded::Empty(header.geometry);
  std::vector<std::string> named;
  uint64_t damaged = 0;
  BLKCLONE_RETURN_IF_ERROR(
      internal::ForEachBitmapBlock(device, header, [&](const BitmapBlockView& view) {
        uint8_t& flags = loaded.blocks[view.index];
        for (int s = 0; s < 2; ++s) {
          if (view.kinds[s].kind == internal::SlotKind::kBlank) continue;
          flags |= UsedFlag(s);
          ++loaded.used_slots;
        }
        if (!view.choice.damage.empty()) {
          if (damaged++ < kNamedBlocks) named.push_back(internal::DescribeDamage(header, view));
          return absl::OkStatus();
        }
        if (view.choice.WriteSlot() == 0) flags |= kNextInA;
        if (view.choice.rewrite_slot != internal::kNoSlot) loaded.rewrite.push_back(view.index);
        const uint64_t base = view.index * kWordsPerBitmapBlock;
        const uint64_t words = internal::WordsInBlock(header.geometry.region_count, view.index);
        for (uint64_t w = 0; w < words; ++w) {
          if (const uint64_t word = view.Word(w); word != 0) loaded.map->OrWord(base + w, word);
        }
        return absl::OkStatus();
      }));
  if (damaged == 0) return loaded;
  std::string message =
      absl::StrCat(damaged, " damaged bitmap block(s): ", absl::StrJoin(named, "; "),
                   damaged > named.size() ? "; ..." : "", ". Run `blkclone check`.");
  if (writable) {
    // Into the slot that does not hold the current superblock, at the same
    // generation: a torn write there cannot cost the committed state.
    StoredHeader marked = header;
    marked.needs_check = true;
    absl::Status status = internal::WriteSuperblock(device, 1 - header.superblock_slot, marked);
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
  next.compat_features |= kFeatureFinished;
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
  // A retry after a failure reuses the same generation and slots, so the
  // current superblock is never overwritten while it is the only complete one.
  ++next.generation;
  next.superblock_slot = 1 - next.superblock_slot;
  std::sort(blocks.begin(), blocks.end());
  if (!blocks.empty()) {
    BLKCLONE_RETURN_IF_ERROR(WriteBitmapBlocks(blocks, next));
    BLKCLONE_RETURN_IF_ERROR(Flush(device_));
  }
  BLKCLONE_RETURN_IF_ERROR(internal::WriteSuperblock(device_, next.superblock_slot, next));
  BLKCLONE_RETURN_IF_ERROR(Flush(device_));

  internal::MutexLock lock(mu_);
  for (uint64_t block : blocks) {
    uint8_t& flags = blocks_[block];
    const uint8_t used = UsedFlag(NextSlot(flags));
    if ((flags & used) == 0) ++used_slots_;
    flags |= used;
    flags &= ~kSealed;
    flags ^= kNextInA;  // the version just written is now the committed one
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
  const uint64_t chunk = internal::ChunkBlocks(device_.info());
  for (size_t first = 0; first < blocks.size(); first += chunk) {
    const std::span<const uint64_t> batch =
        std::span(blocks).subspan(first, std::min<size_t>(chunk, blocks.size() - first));
    BlockBuffer buffer(batch.size(), device_.info());
    std::vector<int> slots(batch.size());
    {
      internal::MutexLock lock(mu_);
      const RegionMap& map = *maps_.back();
      for (size_t i = 0; i < batch.size(); ++i) {
        const uint64_t block = batch[i];
        slots[i] = NextSlot(blocks_[block]);
        const auto snapshot = snapshots_.find(block);
        const uint64_t words = internal::WordsInBlock(geometry_.region_count, block);
        for (uint64_t w = 0; w < words; ++w) {
          internal::StoreBitmapWord(buffer.block(i), w,
                                    snapshot != snapshots_.end()
                                        ? snapshot->second[w]
                                        : map.Word(block * kWordsPerBitmapBlock + w));
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i)
      internal::SealBitmapBlock(buffer.block(i), next.uuid, batch[i], next.generation);
    // Neighbouring blocks bound for the same slot array go out as one request.
    std::vector<Request> writes;
    for (size_t i = 0; i < batch.size();) {
      size_t end = i + 1;
      while (end < batch.size() && batch[end] == batch[end - 1] + 1 && slots[end] == slots[i])
        ++end;
      writes.push_back(
          Request::Write((next.layout.slot_start[slots[i]] + batch[i]) * kMetadataBlockSize,
                         buffer.blocks(i, end - i)));
      i = end;
    }
    BLKCLONE_RETURN_IF_ERROR(internal::SubmitAll(device_, writes));
  }
  return absl::OkStatus();
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
  absl::StatusOr<Loaded> loaded =
      header.needs_check && !read_only_ ? NeedsCheckError() : Load(device_, header, !read_only_);
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
  return MetadataUsage{.block_size = kMetadataBlockSize,
                       .used_blocks = internal::kFirstBitmapBlock + used_slots_,
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

}  // namespace blkclone

// PersistentMetadata: the crash-consistent on-disk Metadata of a clone.
//
// The hydration map lives on a metadata device as two superblock slots and two
// copies ("slots") of every bitmap block. A commit writes only the bitmap blocks
// it changed, each into the slot that does not hold its committed version, then
// a superblock with the next generation into the superblock slot that does not
// hold the current one. A crash at any moment therefore leaves the last complete
// commit readable; docs/metadata-format.md describes the format byte by byte.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto file, blkclone::FileDevice::Open("meta.img", {}));
//   BLKCLONE_ASSIGN_OR_RETURN(
//       std::unique_ptr<blkclone::PersistentMetadata> meta,
//       blkclone::PersistentMetadata::Open(blkclone::AnyBlockDevice(std::move(file)), geometry));
//   meta->MarkHydrated(0, 16);
//   meta->Seal();
//   BLKCLONE_RETURN_IF_ERROR(blkclone::Flush(destination));  // invariant I1
//   BLKCLONE_RETURN_IF_ERROR(meta->CommitSealed());
//
// Threading: map() is lock-free. MarkHydrated, Seal and the accessors take a
// short internal lock and may run on any thread, concurrently with a commit.
// CommitSealed, ReloadCommitted and SetFinished serialise among themselves and
// wait for metadata I/O, so they must not run on a device completion thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/metadata.hpp"

namespace blkclone {

// The unit of metadata I/O; the metadata device's logical block size must divide it.
inline constexpr uint64_t kMetadataBlockSize = 4096;

// Compatible feature bit: the clone was finished (replaced by its destination).
inline constexpr uint64_t kFeatureFinished = uint64_t{1} << 0;

struct Uuid {
  std::array<uint8_t, 16> bytes{};

  // A random (version 4) UUID from the system's entropy source.
  static Uuid Random();
  // Lowercase 8-4-4-4-12 hexadecimal form.
  std::string ToString() const;
  bool operator==(const Uuid&) const = default;
};

// Where the bitmap lives on the metadata device, in metadata blocks.
struct MetadataLayout {
  uint64_t bitmap_blocks = 0;  // blocks per slot array
  int copies = 1;              // of each version: 1 in format 1, 2 in format 2
  // First block of each slot array: 2 * copies of them. Array s holds copy
  // s % copies of pair s / copies (format 1: A, B; format 2: A1, A2, B1, B2).
  std::array<uint64_t, 4> slot_start{};

  int slots() const { return 2 * copies; }
  bool operator==(const MetadataLayout&) const = default;
};

// The content of a superblock, as stored.
struct StoredHeader {
  uint32_t format_version = 0;
  Uuid uuid;
  uint64_t generation = 0;  // of the last complete commit
  CloneGeometry geometry;
  uint64_t compat_features = 0;    // unknown bits are ignored by readers
  uint64_t incompat_features = 0;  // unknown bits make readers refuse the metadata
  bool needs_check = false;        // damage was found; read-write opens are refused
  MetadataLayout layout;
  int superblock_slot = 0;  // not stored: the slot this header was read from
  // Not stored: valid copies of this generation in the pair of superblock_slot.
  int superblock_copies = 0;

  bool finished() const { return (compat_features & kFeatureFinished) != 0; }
};

// Outside PersistentMetadata so that its defaults can serve as a default argument there.
struct MetadataOpenOptions {
  bool read_only = false;
  // A device whose two superblock slots are all zeroes is formatted; else it
  // is kNotFound. Only a clone's creation formats.
  bool format_if_blank = false;
  // The UUID a format gives the metadata; random when unset. For reproducible images.
  std::optional<Uuid> format_uuid = std::nullopt;
  // The format version a format writes and a read-write open upgrades older
  // metadata to (when the device has room). 1 writes what older builds read.
  uint32_t format_version = 2;
  // A read-write open that proceeds despite needs_check and damage: a damaged
  // bitmap block takes its newest readable committed version (all zeroes if
  // none), losing the regions only a lost version had. The open then commits at
  // once, rewriting every damaged block, with needs_check cleared.
  bool repair = false;
};

class PersistentMetadata final : public Metadata {
 public:
  using OpenOptions = MetadataOpenOptions;

  // Opens (or formats, see OpenOptions) the metadata on `device` for `geometry`.
  // A read-write open upgrades format 1 metadata in place (crash-safe) when the
  // device has room for format 2, and rewrites at once a block or superblock
  // whose committed version lost one of its two copies.
  // Errors: kInvalidArgument (bad geometry, device block size, device too small),
  // kNotFound (blank and not formatting), kFailedPrecondition (not blkclone
  // metadata, geometry mismatch, needs_check on a read-write open), kUnimplemented
  // (newer format or features), kDataLoss (unreadable superblocks or bitmap).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PersistentMetadata>> Open(
      AnyBlockDevice device, const CloneGeometry& geometry, const OpenOptions& options = {});

  // The current header of the metadata on `device`, for tools that do not know
  // the geometry. Errors as Open's, with kNotFound for a blank device.
  [[nodiscard]] static absl::StatusOr<StoredHeader> ReadHeader(AnyBlockDevice& device);

  // Smallest metadata device, in bytes, that holds `geometry`'s map in format 2
  // (or in `format_version`).
  static uint64_t RequiredSize(const CloneGeometry& geometry, uint32_t format_version = 2);

  const CloneGeometry& geometry() const override { return geometry_; }
  const RegionMap& map() const override { return *map_.load(std::memory_order_acquire); }
  void MarkHydrated(uint64_t first, uint64_t count) override;
  void Seal() override;
  // Writes the sealed bitmap blocks, flushes, writes the superblock, flushes;
  // does no I/O when nothing is sealed. Fails on a read-only open.
  absl::Status CommitSealed() override;
  // Flushes the device (a failed commit may have left writes in its cache), then
  // reads the committed state back; kDataLoss if it is damaged.
  absl::Status ReloadCommitted() override;
  // used: superblocks plus bitmap slots ever written; total: the whole device.
  MetadataUsage usage() const override;
  void ReleaseMapIfComplete() override;

  // Commits the finished flag together with whatever is sealed, so like
  // CommitSealed it must follow the destination flush after the last Seal().
  // kFailedPrecondition, changing nothing, unless every region is hydrated.
  [[nodiscard]] absl::Status SetFinished();
  bool finished() const override;
  Uuid uuid() const;
  // Generation of the last complete commit.
  uint64_t generation() const;
  uint32_t format_version() const;
  bool read_only() const { return read_only_; }

 private:
  struct Loaded;

  PersistentMetadata(AnyBlockDevice device, const StoredHeader& header, bool read_only,
                     Loaded loaded);

  // Installs a state read from disk, dropping every uncommitted mark.
  void Install(const StoredHeader& header, Loaded loaded) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One commit of the sealed blocks. `next` is the current header plus any change
  // to persist; its generation and slot advance here. `always` writes the
  // superblock even when no block is sealed.
  absl::Status Commit(StoredHeader next, bool always) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // A commit now, of whatever is queued, with needs_check cleared: restores
  // the copies that damage or an interrupted commit cost.
  absl::Status Rewrite();
  // Writes `blocks` (sorted) into their free pairs, stamped with `next`'s generation.
  absl::Status WriteBitmapBlocks(const std::vector<uint64_t>& blocks, const StoredHeader& next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // The state `header` committed. Damage gives kDataLoss, after recording
  // needs_check on the device when `writable`; with `repair`, a damaged block
  // takes its newest readable version and is queued for rewriting instead.
  static absl::StatusOr<Loaded> Load(AnyBlockDevice& device, const StoredHeader& header,
                                     bool writable, bool repair);

  const CloneGeometry geometry_;
  const bool read_only_;
  const uint64_t total_blocks_;

  // Serialises the operations that do metadata I/O; taken before mu_.
  internal::Mutex commit_mu_;
  AnyBlockDevice device_ ABSL_GUARDED_BY(commit_mu_);

  mutable internal::Mutex mu_;
  StoredHeader header_ ABSL_GUARDED_BY(mu_);  // of the last complete commit
  // Set when damage was found: commits are refused until the metadata is checked.
  absl::Status damage_ ABSL_GUARDED_BY(mu_);
  // Every map handed out stays alive; the last one is current.
  std::vector<std::unique_ptr<RegionMap>> maps_ ABSL_GUARDED_BY(mu_);
  std::atomic<const RegionMap*> map_;
  // Per bitmap block: BlockFlags (see the .cc).
  std::vector<uint8_t> blocks_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> dirty_ ABSL_GUARDED_BY(mu_);   // marked since the last Seal
  std::vector<uint64_t> sealed_ ABSL_GUARDED_BY(mu_);  // sealed, not yet committed
  // Bitmap words of sealed blocks as they were at the seal, taken when a later
  // mark changes such a block before it is written.
  std::unordered_map<uint64_t, std::vector<uint64_t>> snapshots_ ABSL_GUARDED_BY(mu_);
  uint64_t used_slots_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blkclone

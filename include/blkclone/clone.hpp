// Clone: a BlockDevice that presents a read-only source as a writable copy
// while its regions are hydrated into a destination (Linux dm-clone's rules).
//
// Reads of hydrated regions go to the destination, of other regions to the
// source. A write to an unhydrated region first hydrates it (or, when it covers
// the whole region, is the hydration); writes arriving meanwhile wait behind
// that single hydration. Discards mark whole regions hydrated without copying.
// Holes of the source (caps.block_status) are not copied: a hydration zeroes
// them on the destination cheaply and copies only the data around them, and
// reads of unhydrated holes return zeroes without reading the source. The
// clone answers kBlockStatus itself, from both devices.
// FLUSH and FUA commit the metadata when the map changed since the last
// commit, after flushing the destination. The source is only ever read.
//
//   InMemoryMetadata meta(*MakeCloneGeometry(src.info(), dst.info(), 64 << 10));
//   BufferedCopier copier(src, dst);
//   auto clone = Clone<FileDevice, FileDevice, decltype(copier)>::Create(
//       src, dst, copier, meta, {});
//   BLKCLONE_RETURN_IF_ERROR(WriteAt(**clone, 0, data, kFua));
//
// Threading: Submit from any thread. Completions of the devices and copier run
// the engine's continuations; the engine never holds its lock across Submit or
// Copy, so devices may complete inline. One committer thread runs commits.
// Locking: mu_ guards the in-flight hydration index, waiting lists, commit
// sequence numbers and the mode; the region map is read without it.
//
// Modes (clone-semantics "Metadata modes"): a failed commit switches to ro and
// reloads the last committed map; then reads work, requests that would change
// the map fail with EIO, and so do FLUSH and FUA while marks the reload dropped
// are owed; discards of hydrated ranges pass down, others are ignored. If the
// reload fails too, Fail: every request fails. Only a new Clone over reopened
// metadata is rw again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/block_device.hpp"
#include "blkclone/clone_geometry.hpp"
#include "blkclone/clone_listener.hpp"
#include "blkclone/copier.hpp"
#include "blkclone/events.hpp"
#include "blkclone/extents.hpp"
#include "blkclone/internal/clone_parts.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/object_pool.hpp"
#include "blkclone/metadata.hpp"
#include "blkclone/source_allocation.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/zeroes.hpp"

namespace blkclone {

struct CloneOptions {
  // Pass discards, trimmed to whole regions, on to the destination (when it can).
  bool discard_passdown = true;
  // Commit at least this often while the map changes.
  std::chrono::milliseconds commit_interval{1000};
  // Receives mode changes (and, with a hydrator, hydration events); may be null.
  CloneEvents* events = nullptr;
  // Ask the source where its holes are, when it can tell, so that hydration
  // zeroes them instead of copying and reads of them need no source read.
  bool skip_holes = true;
  // The source is asked a window of this many bytes at a time, and the
  // answers for at most `allocation_windows_kept` windows are kept.
  uint64_t allocation_window = SourceAllocationOptions().window;
  size_t allocation_windows_kept = SourceAllocationOptions().max_windows;
};

// What StartBackgroundHydration started: `regions` from the first one, and
// whether they are all holes of the source, zeroed without a copy (those do
// not count toward a scheduler's threshold: they cost no copy).
struct StartedHydration {
  uint64_t regions = 0;
  bool zeroes_only = false;
};

// Part of the map, for DescribeHydration: a run of bytes all hydrated or not.
struct RangeState {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool hydrated = false;
  friend bool operator==(const RangeState&, const RangeState&) = default;
};

template <BlockDevice Source, BlockDevice Dest, Copier CopierT>
class Clone {
 public:
  // Checks that the metadata is not a finished clone's, that the devices
  // match its geometry and that the region size suits both devices; the devices, copier and metadata must
  // outlive the clone.
  static absl::StatusOr<std::unique_ptr<Clone>> Create(Source& source, Dest& dest,
                                                       CopierT& copier, Metadata& metadata,
                                                       const CloneOptions& options) {
    if (metadata.finished())
      return absl::FailedPreconditionError(
          "the metadata records a finished clone: its destination is to be used directly");
    const CloneGeometry& g = metadata.geometry();
    BLKCLONE_ASSIGN_OR_RETURN(CloneGeometry expected,
                              MakeCloneGeometry(source.info(), dest.info(), g.region_size));
    if (!(expected == g))
      return absl::FailedPreconditionError(absl::StrCat(
          "metadata geometry (source ", g.source_size, " bytes, destination ", g.dest_size,
          " bytes, region ", g.region_size, ") does not match the devices (source ",
          expected.source_size, " bytes, destination ", expected.dest_size, " bytes)"));
    return std::unique_ptr<Clone>(new Clone(source, dest, copier, metadata, options));
  }

  // Close()s the clone.
  ~Clone() { (void)Close(); }
  Clone(const Clone&) = delete;
  Clone& operator=(const Clone&) = delete;

  const DeviceInfo& info() const { return info_; }
  const CloneGeometry& geometry() const { return geometry_; }
  const Metadata& metadata() const { return metadata_; }
  bool discard_passdown() const { return discard_passdown_; }

  void Submit(Request& user) noexcept {
    if (absl::Status status = ValidateRequest(info_, user); !status.ok())
      return user.Complete(std::move(status));
    {
      internal::MutexLock lock(mu_);
      if (closing_)
        return user.Complete(absl::FailedPreconditionError("the clone is closed"));
      if (mode_ == CloneMode::kFail) return user.Complete(ModeError(user.op));
      ++active_ios_;
    }
    internal::UserIo* io = ios_.Get();
    io->user = &user;
    io->failed.store(false, std::memory_order_relaxed);
    io->status = absl::OkStatus();
    io->after_preflush = (user.flags & kPreflush) != 0 && user.op != Op::kFlush;
    if (user.op == Op::kBlockStatus) {
      DescribeStorage(*io);
    } else if (user.op == Op::kFlush || io->after_preflush) {
      StartFlush(*io);
    } else {
      Dispatch(*io);
    }
  }

  // Commits the metadata if the map changed: a FLUSH of the clone.
  [[nodiscard]] absl::Status Commit() { return Flush(*this); }

  // Waits for every request and hydration in flight, commits, and stops the
  // committer. Later requests fail with kFailedPrecondition. Idempotent.
  [[nodiscard]] absl::Status Close() {
    {
      internal::MutexLock lock(mu_);
      if (closing_) return close_status_;
      closing_ = true;
      drained_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return active_ios_ == 0 && active_hydrations_ == 0 && listener_calls_ == 0;
      });
    }
    absl::Status status = RunCommit();
    {
      internal::MutexLock lock(mu_);
      stopping_ = true;
      close_status_ = status;
      commit_cv_.SignalAll();
    }
    committer_.join();
    return status;
  }

  // Installs the scheduler that hears about reads, idleness and hydrations;
  // call before the clone is in use. Null removes it.
  void SetListener(CloneListener* listener) { listener_.store(listener, std::memory_order_release); }

  // Starts a background copy of the unhydrated regions from `first` on, at
  // most `max_count` of them (more when they are holes of the source, which
  // cost no copy), stopping at the first region that is hydrated or being
  // hydrated. Returns what it started (0 regions: none to copy there); the
  // end is reported by CloneListener::OnHydrationDone. May first wait for the
  // source to say where its holes are there. Fails in ro and Fail modes and
  // once the clone is closing.
  absl::StatusOr<StartedHydration> StartBackgroundHydration(uint64_t first, uint64_t max_count) {
    return StartHydration(first, max_count, /*background=*/true);
  }

  // Hydrates every region overlapping [offset, offset + length) and waits
  // until they are (a prefetch, such as NBD_CMD_CACHE). Fails with the error
  // of a copy that failed, in ro and Fail modes and once closing.
  [[nodiscard]] absl::Status HydrateRange(uint64_t offset, uint64_t length) {
    if (offset > geometry_.source_size || length > geometry_.source_size - offset)
      return absl::OutOfRangeError(absl::StrCat("hydrate range at offset ", offset, " length ",
                                                length, ": beyond the end of the clone (",
                                                geometry_.source_size, " bytes)"));
    if (length == 0) return absl::OkStatus();
    const uint64_t end = (offset + length - 1) / geometry_.region_size + 1;
    for (uint64_t region = RegionOf(offset);;) {
      region = metadata_.map().FindNextUnset(region);
      if (region >= end) return absl::OkStatus();
      BLKCLONE_ASSIGN_OR_RETURN(StartedHydration start,
                                StartHydration(region, end - region, /*background=*/false));
      const uint64_t started = start.regions;
      internal::MutexLock lock(mu_);
      hydration_done_cv_.Wait(mu_, [this, region]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return FindHydration(region, region + 1) == nullptr;
      });
      if (!metadata_.map().IsSet(region)) {
        if (mode_ != CloneMode::kReadWrite) return ModeError(Op::kWrite);
        if (started > 0) return last_hydration_error_;  // ours failed
      }
      if (started > 0) region += started;
    }
  }

  // Which bytes of [offset, offset + length) are hydrated, as runs in order.
  std::vector<RangeState> DescribeHydration(uint64_t offset, uint64_t length) const {
    std::vector<RangeState> runs;
    const uint64_t end = std::min(offset + length, geometry_.source_size);
    for (uint64_t at = offset; at < end;) {
      const bool hydrated = metadata_.map().IsSet(RegionOf(at));
      uint64_t next = std::min((RegionOf(at) + 1) * geometry_.region_size, end);
      if (!runs.empty() && runs.back().hydrated == hydrated) {
        runs.back().length += next - at;
      } else {
        runs.push_back({.offset = at, .length = next - at, .hydrated = hydrated});
      }
      at = next;
    }
    return runs;
  }

  // Bytes of source data (what hydration copies) in regions not yet
  // hydrated, and in all. Waits for the source to describe every window.
  struct DataBytes {
    uint64_t unhydrated = 0;
    uint64_t total = 0;
  };
  DataBytes CountDataBytes() {
    constexpr uint64_t kAskedAhead = 8;  // windows asked at once
    DataBytes bytes;
    std::vector<Extent> extents;
    const uint64_t window = allocation_.window();
    for (uint64_t at = 0; at < geometry_.source_size; at += window) {
      const uint64_t length = std::min(window, geometry_.source_size - at);
      for (uint64_t ahead = at; ahead < std::min(at + kAskedAhead * window, geometry_.source_size);
           ahead += window)
        (void)allocation_.HoleEnd(ahead);  // asks if unknown
      do {
        allocation_.WaitUntilKnown(at);
      } while (!allocation_.Lookup(at, length, extents));  // forgotten meanwhile: ask again
      for (const Extent& extent : extents) {
        if (extent.hole && SparseHydration()) continue;
        bytes.total += extent.length;
        for (uint64_t b = extent.offset; b < extent.end();) {
          const uint64_t next = std::min((RegionOf(b) + 1) * geometry_.region_size, extent.end());
          if (!metadata_.map().IsSet(RegionOf(b))) bytes.unhydrated += next - b;
          b = next;
        }
      }
    }
    return bytes;
  }

  // Data copied from the source and holes zeroed by this clone's hydrations.
  uint64_t copied_bytes() const { return Get(&Clone::copied_bytes_); }
  uint64_t zeroed_bytes() const { return Get(&Clone::zeroed_bytes_); }

  // Frees the region map's memory once everything is hydrated, at the first
  // moment no request or hydration is in flight (now, if there is none).
  void ReleaseMapWhenComplete() {
    internal::MutexLock lock(mu_);
    release_map_ = true;
    SignalIfDrained();
  }

  // The hydration map as a scheduler needs it (Hydrator), without the metadata.
  bool IsHydrated(uint64_t region) const { return metadata_.map().IsSet(region); }
  // The first unhydrated region at or after `from`; region_count if none.
  uint64_t NextUnhydrated(uint64_t from) const { return metadata_.map().FindNextUnset(from); }
  uint64_t hydrated_regions() const { return metadata_.map().CountSet(); }
  bool AllHydrated() const { return metadata_.map().AllSet(); }

  // Regions being hydrated right now (the dm status line's "hydrating regions").
  uint64_t hydrating_regions() const { return Get(&Clone::hydrating_regions_); }
  // Of those, the regions whose hydration reads the source (not a hole run).
  uint64_t copying_regions() const { return Get(&Clone::copying_regions_); }
  // User requests whose completion has not yet returned.
  uint64_t active_requests() const { return Get(&Clone::active_ios_); }
  CloneMode mode() const { return Get(&Clone::mode_); }

 private:
  using Piece = internal::Piece;
  using UserIo = internal::UserIo;
  using Hydration = internal::Hydration;

  Clone(Source& source, Dest& dest, CopierT& copier, Metadata& metadata,
        const CloneOptions& options)
      : source_(source),
        dest_(dest),
        copier_(copier),
        metadata_(metadata),
        geometry_(metadata.geometry()),
        info_(MakeInfo(source.info(), dest.info())),
        piece_limit_(PieceLimit(source.info(), dest.info(), info_.logical_block_size)),
        discard_passdown_(options.discard_passdown && dest.info().caps.discard),
        commit_interval_(options.commit_interval),
        events_(options.events),
        skip_holes_(options.skip_holes && source.info().caps.block_status),
        zeroing_op_(ThinZeroingOp(dest.info().caps)),
        allocation_(geometry_.source_size, info_.logical_block_size, geometry_.region_size,
                    skip_holes_ ? SourceAllocation::SubmitFn([this](Request& r) { source_.Submit(r); })
                                : nullptr,
                    [events = options.events](const absl::Status& cause) {
                      if (events != nullptr) events->OnSourceAllocationUnknown(cause);
                    },
                    {.window = options.allocation_window,
                     .max_windows = options.allocation_windows_kept}) {
    committer_ = std::thread([this] { CommitLoop(); });
  }

  static DeviceInfo MakeInfo(const DeviceInfo& source, const DeviceInfo& dest) {
    return DeviceInfo{
        .size = source.size,
        .logical_block_size = std::max(source.logical_block_size, dest.logical_block_size),
        .memory_alignment = std::max(source.memory_alignment, dest.memory_alignment),
        .max_transfer = 0,
        .caps = {.discard = true,
                 .discard_zeroes_data = false,
                 .write_zeroes = dest.caps.write_zeroes,
                 .read_only = false,
                 .block_status = true,
                 .volatile_write_cache = true,
                 .fua = FuaSupport::kEmulated}};
  }

  // The largest piece both devices accept, in whole blocks (0: no limit).
  static uint64_t PieceLimit(const DeviceInfo& source, const DeviceInfo& dest, uint64_t block) {
    uint64_t limit = 0;
    for (uint64_t max : {source.max_transfer, dest.max_transfer}) {
      if (max != 0) limit = limit == 0 ? max : std::min(limit, max);
    }
    return limit == 0 ? 0 : std::max(block, limit / block * block);
  }

  uint64_t RegionOf(uint64_t offset) const { return offset / geometry_.region_size; }

  // A guarded field's value, read under the lock (by member pointer: the
  // lock is taken here, not held by the caller).
  template <class T>
  T Get(T Clone::*field) const {
    internal::MutexLock lock(mu_);
    return this->*field;
  }

  // ---- Splitting and routing ----

  // Splits a read, write or write-zeroes at region boundaries (and the
  // devices' transfer limits) and routes each piece; a discard is one piece.
  // The last piece may complete the request inline, so once it is routed
  // neither `io` nor the user's request may be touched.
  void Dispatch(UserIo& io) {
    const Request& user = *io.user;
    if (user.op == Op::kDiscard) return DispatchDiscard(io);
    const Op op = user.op;
    const uint8_t flags = user.flags & kFua;
    const uint64_t begin = user.offset, end = user.offset + user.length;
    std::byte* const data = user.data;
    if (begin == end) return FinishIo(io);
    uint32_t pieces = 0;
    for (uint64_t at = begin; at < end; at = PieceEnd(at, end)) ++pieces;
    io.pieces_left.store(pieces, std::memory_order_relaxed);
    for (uint64_t at = begin; at < end;) {
      const uint64_t next = PieceEnd(at, end);
      Piece& piece = NewPiece(io);
      piece.region = RegionOf(at);
      piece.down = Request::Make(op, flags, at, next - at,
                                 data == nullptr ? nullptr : data + (at - begin));
      at = next;
      Route(piece);
    }
  }

  uint64_t PieceEnd(uint64_t at, uint64_t end) const {
    end = std::min((RegionOf(at) + 1) * geometry_.region_size, end);
    if (piece_limit_ != 0) end = std::min(end, at + piece_limit_);
    return end;
  }

  Piece& NewPiece(UserIo& io) {
    Piece* piece = pieces_.Get();
    piece->owner = this;
    piece->io = &io;
    piece->hydration = nullptr;
    return *piece;
  }

  void Route(Piece& piece) {
    if (piece.down.op == Op::kRead) {
      if (metadata_.map().IsSet(piece.region)) return SubmitDown(piece, dest_);
      if (IsSourceHole(piece.down.offset, piece.down.length)) {
        std::memset(piece.down.data, 0, piece.down.length);
        return FinishPiece(piece, absl::OkStatus());
      }
      if (CloneListener* listener = listener_.load(std::memory_order_acquire))
        listener->OnUnhydratedRead(piece.region);
      return SubmitDown(piece, source_);
    }
    if (metadata_.map().IsSet(piece.region)) return SubmitDown(piece, dest_);
    RouteToUnhydrated(piece);
  }

  // A write-like piece for a region that was not hydrated when looked at.
  void RouteToUnhydrated(Piece& piece) {
    Hydration* hydration = nullptr;
    absl::Status refused;
    {
      internal::MutexLock lock(mu_);
      if (!metadata_.map().IsSet(piece.region)) {
        if (mode_ != CloneMode::kReadWrite) {
          refused = ModeError(piece.down.op);
        } else if (Hydration* in_flight = FindHydration(piece.region, piece.region + 1)) {
          in_flight->waiters.push_back(piece);
          return;
        } else {
          hydration = NewHydrationLocked(piece.region, 1, /*zeroes_only=*/false);
          hydration->overwrite = piece.down.length == geometry_.region_size;
          if (!hydration->overwrite) hydration->waiters.push_back(piece);
        }
      }
    }
    if (!refused.ok()) return FinishPiece(piece, std::move(refused));
    if (hydration == nullptr) return SubmitDown(piece, dest_);  // hydrated meanwhile
    if (!hydration->overwrite) return StartCopy(*hydration);
    // The write is the hydration: no copy, the region counts once it lands.
    piece.hydration = hydration;
    piece.down.context = &piece;
    piece.down.on_complete = &OnOverwriteDone;
    dest_.Submit(piece.down);
  }

  template <class Device>
  void SubmitDown(Piece& piece, Device& device) {
    piece.down.context = &piece;
    piece.down.on_complete = &OnPieceDone;
    device.Submit(piece.down);
  }

  static void OnPieceDone(Request& down, absl::Status status) {
    Piece& piece = *static_cast<Piece*>(down.context);
    static_cast<Clone*>(piece.owner)->FinishPiece(piece, std::move(status));
  }

  // ---- Hydrations ----

  // The in-flight hydration overlapping regions [first, end), if any.
  Hydration* FindHydration(uint64_t first, uint64_t end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = hydrations_.upper_bound(end - 1, internal::HydrationKeyLess());
    if (it == hydrations_.begin()) return nullptr;
    --it;
    return it->first_region + it->region_count > first ? &*it : nullptr;
  }

  Hydration* NewHydrationLocked(uint64_t first, uint64_t count, bool zeroes_only)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Hydration* hydration = hydration_pool_.Get();
    hydration->owner = this;
    hydration->first_region = first;
    hydration->region_count = count;
    hydration->overwrite = false;
    hydration->background = false;
    hydration->zeroes_only = zeroes_only;
    hydrations_.insert(*hydration);
    hydrating_regions_ += count;
    if (!zeroes_only) copying_regions_ += count;
    ++active_hydrations_;
    return hydration;
  }

  absl::StatusOr<StartedHydration> StartHydration(uint64_t first, uint64_t max_count,
                                                  bool background) {
    uint64_t hole_regions = 0;
    if (first < geometry_.region_count && SparseHydration()) {
      // Within one window of the source's answer, and past a batch over holes.
      allocation_.WaitUntilKnown(first * geometry_.region_size);
      const uint64_t window_regions = allocation_.window() / geometry_.region_size;
      hole_regions = HoleRegionsFrom(first);
      max_count = std::min(std::max(max_count, hole_regions),
                           (first / window_regions + 1) * window_regions - first);
    }
    Hydration* hydration;
    {
      internal::MutexLock lock(mu_);
      if (closing_) return absl::FailedPreconditionError("the clone is closed");
      if (mode_ != CloneMode::kReadWrite) return ModeError(Op::kWrite);
      const RegionMap& map = metadata_.map();
      uint64_t count = 0;
      const uint64_t end = std::min(geometry_.region_count, first + max_count);
      while (first + count < end && !map.IsSet(first + count)) ++count;
      if (count == 0) return StartedHydration{};
      // Stop before any region a hydration in flight already covers.
      while (Hydration* in_flight = FindHydration(first, first + count)) {
        if (in_flight->first_region <= first) return StartedHydration{};
        count = in_flight->first_region - first;
      }
      hydration = NewHydrationLocked(first, count, /*zeroes_only=*/count <= hole_regions);
      hydration->background = background;
    }
    const StartedHydration started{.regions = hydration->region_count,
                                   .zeroes_only = hydration->zeroes_only};
    StartCopy(*hydration);
    return started;
  }

  // Holes are zeroed rather than copied: the source tells where they are and
  // the destination can zero without writing data.
  bool SparseHydration() const { return skip_holes_ && zeroing_op_.has_value(); }

  // Whether the source is known to read as zeroes all over the range, which
  // lies within a region.
  bool IsSourceHole(uint64_t offset, uint64_t length) {
    if (!skip_holes_) return false;
    std::optional<uint64_t> hole_end = allocation_.HoleEnd(offset);
    return hole_end.has_value() && *hole_end >= offset + length;
  }

  // How many whole regions from `first` on are known holes of the source.
  uint64_t HoleRegionsFrom(uint64_t first) {
    const uint64_t offset = first * geometry_.region_size;
    std::optional<uint64_t> hole_end = allocation_.HoleEnd(offset);
    if (!hole_end) return 0;
    if (*hole_end >= geometry_.source_size) return geometry_.region_count - first;
    return (*hole_end - offset) / geometry_.region_size;
  }

  void StartCopy(Hydration& hydration) {
    const uint64_t offset = hydration.first_region * geometry_.region_size;
    const uint64_t length =
        std::min(hydration.region_count * geometry_.region_size, geometry_.source_size - offset);
    hydration.copied_bytes = length;
    hydration.zeroed_bytes = 0;
    if (SparseHydration() && allocation_.Lookup(offset, length, hydration.extents) &&
        HoleBytes(hydration.extents) > 0)
      return StartParts(hydration);
    hydration.job.offset = offset;
    hydration.job.length = length;
    hydration.job.context = &hydration;
    hydration.job.on_complete = &OnCopyDone;
    hydration.job.background = hydration.background;
    copier_.Copy(hydration.job);
  }

  static void OnCopyDone(CopyJob& job, absl::Status status) {
    Hydration& hydration = *static_cast<Hydration*>(job.context);
    (void)static_cast<Clone*>(hydration.owner)->FinishHydration(hydration, std::move(status));
  }

  // A range with holes: each hole is zeroed on the destination, each run of
  // data copied; the hydration ends with its last part. The zeroing is as
  // volatile as a write: the commit that marks the range flushes it first.
  void StartParts(Hydration& hydration) {
    hydration.copies.clear();
    hydration.zeroings.clear();
    hydration.copied_bytes = hydration.zeroed_bytes = 0;
    for (const Extent& extent : hydration.extents) {
      if (extent.hole) {
        hydration.zeroings.push_back(
            Request::Make(*zeroing_op_, kNoFlags, extent.offset, extent.length, nullptr));
        hydration.zeroings.back().context = &hydration;
        hydration.zeroings.back().on_complete = &OnZeroingDone;
        hydration.zeroed_bytes += extent.length;
        continue;
      }
      CopyJob& job = hydration.copies.emplace_back();
      job.offset = extent.offset;
      job.length = extent.length;
      job.context = &hydration;
      job.on_complete = &OnPartCopied;
      job.background = hydration.background;
      hydration.copied_bytes += extent.length;
    }
    hydration.part_failed.store(false, std::memory_order_relaxed);
    hydration.part_status = absl::OkStatus();
    // The last part may end the hydration inside its call: count first, and
    // touch nothing of the hydration after submitting it.
    const size_t zeroings = hydration.zeroings.size(), copies = hydration.copies.size();
    hydration.parts_left.store(static_cast<uint32_t>(zeroings + copies),
                               std::memory_order_relaxed);
    Request* zeroing = hydration.zeroings.data();
    CopyJob* copy = hydration.copies.data();
    for (size_t i = 0; i < zeroings; ++i) dest_.Submit(zeroing[i]);
    for (size_t i = 0; i < copies; ++i) copier_.Copy(copy[i]);
  }

  static void OnZeroingDone(Request& request, absl::Status status) {
    Hydration& hydration = *static_cast<Hydration*>(request.context);
    static_cast<Clone*>(hydration.owner)->FinishPart(hydration, std::move(status));
  }
  static void OnPartCopied(CopyJob& job, absl::Status status) {
    Hydration& hydration = *static_cast<Hydration*>(job.context);
    static_cast<Clone*>(hydration.owner)->FinishPart(hydration, std::move(status));
  }
  void FinishPart(Hydration& hydration, absl::Status status) {
    if (!status.ok() && !hydration.part_failed.exchange(true, std::memory_order_relaxed))
      hydration.part_status = std::move(status);
    if (hydration.parts_left.fetch_sub(1, std::memory_order_acq_rel) == 1)
      (void)FinishHydration(hydration, std::move(hydration.part_status));
  }

  static void OnOverwriteDone(Request& down, absl::Status status) {
    Piece& piece = *static_cast<Piece*>(down.context);
    Clone& self = *static_cast<Clone*>(piece.owner);
    // Mark first: the write is acknowledged only if its region counts, so one
    // that lands after a switch to ro fails although its bytes are down.
    absl::Status outcome = self.FinishHydration(*piece.hydration, std::move(status));
    self.FinishPiece(piece, std::move(outcome));
  }

  // Marks the regions on success, then restarts or fails what waited. Returns
  // the hydration's outcome: its own status, or the mode's error when it
  // succeeded outside rw and so marked nothing.
  absl::Status FinishHydration(Hydration& hydration, absl::Status status) {
    internal::WaitList waiters;
    const bool was_copy = !hydration.overwrite;
    HydrationEnd end;
    end.background = hydration.background;
    end.first_region = hydration.first_region;
    end.region_count = hydration.region_count;
    end.zeroes_only = hydration.zeroes_only;
    const uint64_t copied = was_copy ? hydration.copied_bytes : 0;
    {
      internal::MutexLock lock(mu_);
      if (status.ok() && mode_ != CloneMode::kReadWrite) status = ModeError(Op::kWrite);
      if (status.ok()) {
        metadata_.MarkHydrated(hydration.first_region, hydration.region_count);
        ++mark_seq_;
        if (was_copy) {
          copied_bytes_ += copied;
          zeroed_bytes_ += hydration.zeroed_bytes;
        }
      } else {
        last_hydration_error_ = status;
      }
      hydrations_.erase(hydrations_.iterator_to(hydration));
      hydrating_regions_ -= hydration.region_count;
      if (!hydration.zeroes_only) copying_regions_ -= hydration.region_count;
      waiters.swap(hydration.waiters);
    }
    hydration_pool_.Put(&hydration);
    while (!waiters.empty()) {
      Piece& piece = waiters.front();
      waiters.pop_front();
      // Writes behind a failed copy fail with its error (they needed its data);
      // behind a failed overwrite, and discards, they simply run again.
      if (status.ok() || !was_copy || piece.down.op == Op::kDiscard) {
        piece.down.op == Op::kDiscard ? RouteDiscard(piece) : Route(piece);
      } else {
        FinishPiece(piece, status);
      }
    }
    if (CloneListener* listener = listener_.load(std::memory_order_acquire)) {
      end.copied_bytes = status.ok() ? copied : 0;
      end.status = status;
      listener->OnHydrationDone(end);
    }
    internal::MutexLock lock(mu_);
    --active_hydrations_;
    hydration_done_cv_.SignalAll();
    SignalIfDrained();
    return status;
  }

  // ---- Block status ----

  // A kBlockStatus: hydrated runs are asked of the destination, the others of
  // the source (a device that cannot tell reports data); the answers, joined
  // in order and in whole blocks of the clone, complete the request.
  void DescribeStorage(UserIo& io) {
    const Request& user = *io.user;
    auto* query = new internal::StorageQuery;
    query->owner = this;
    query->io = &io;
    const std::vector<RangeState> runs = DescribeHydration(user.offset, user.length);
    query->parts.resize(runs.size());
    for (size_t i = 0; i < runs.size(); ++i) {
      internal::StorageQuery::Part& part = query->parts[i];
      part.request = Request::BlockStatus(runs[i].offset, runs[i].length, &part.extents);
      part.request.context = query;
      part.request.on_complete = &OnStoragePart;
    }
    const size_t parts = runs.size();
    if (parts == 0) return FinishStorageQuery(*query);
    query->parts_left.store(static_cast<uint32_t>(parts), std::memory_order_relaxed);
    for (size_t i = 0; i < parts; ++i) {
      Request& request = query->parts[i].request;
      if (runs[i].hydrated) {
        SubmitStatus(dest_, request);
      } else {
        SubmitStatus(source_, request);
      }
    }
  }

  template <class Device>
  static void SubmitStatus(Device& device, Request& request) {
    if (device.info().caps.block_status) return device.Submit(request);
    *request.extents = {{.offset = request.offset, .length = request.length, .hole = false}};
    request.Complete(absl::OkStatus());
  }

  static void OnStoragePart(Request& request, absl::Status status) {
    auto& query = *static_cast<internal::StorageQuery*>(request.context);
    if (!status.ok() && !query.failed.exchange(true, std::memory_order_relaxed))
      query.status = std::move(status);
    if (query.parts_left.fetch_sub(1, std::memory_order_acq_rel) == 1)
      static_cast<Clone*>(query.owner)->FinishStorageQuery(query);
  }

  void FinishStorageQuery(internal::StorageQuery& query) {
    std::unique_ptr<internal::StorageQuery> owned(&query);
    UserIo& io = *query.io;
    absl::Status status = std::move(query.status);
    if (status.ok()) {
      std::vector<Extent>& out = *io.user->extents;
      out.clear();
      for (const internal::StorageQuery::Part& part : query.parts) {
        status = CheckExtents(part.extents, part.request.offset, part.request.length, 1);
        if (!status.ok()) break;
        for (const Extent& extent : RoundExtents(part.extents, part.request.offset,
                                                 part.request.length, info_.logical_block_size))
          AppendExtent(out, extent.offset, extent.length, extent.hole);
      }
    }
    CompleteUser(io, std::move(status));
  }

  // ---- Discards ----

  void DispatchDiscard(UserIo& io) {
    const Request& user = *io.user;
    const uint64_t region = geometry_.region_size;
    const uint64_t first = (user.offset + region - 1) / region;
    const uint64_t end = user.offset + user.length == geometry_.source_size
                             ? geometry_.region_count  // the short last region counts whole
                             : (user.offset + user.length) / region;
    if (first >= end) return FinishIo(io);  // no whole region: nothing to do
    io.pieces_left.store(1, std::memory_order_relaxed);
    Piece& piece = NewPiece(io);
    piece.region = first;
    piece.region_end = end;
    const uint64_t byte_end = std::min(end * region, geometry_.source_size);
    piece.down = Request::Discard(first * region, byte_end - first * region);
    RouteDiscard(piece);
  }

  // As dm-clone's process_discard_bio: a range already hydrated is passed down
  // and changes nothing; outside rw any other range is ignored (it cannot be
  // marked); in rw the discard waits behind a hydration in flight in the range
  // (its copy could land after the discard and after writes that follow it),
  // else marks the range, and is passed down.
  void RouteDiscard(Piece& piece) {
    bool pass_down = discard_passdown_;
    {
      internal::MutexLock lock(mu_);
      const bool hydrated = metadata_.map().FindNextUnset(piece.region) >= piece.region_end;
      if (hydrated) {
        // Nothing to mark: no commit is owed for it.
      } else if (mode_ != CloneMode::kReadWrite) {
        pass_down = false;
      } else if (Hydration* in_flight = FindHydration(piece.region, piece.region_end)) {
        in_flight->waiters.push_back(piece);
        return;
      } else {
        metadata_.MarkHydrated(piece.region, piece.region_end - piece.region);
        ++mark_seq_;
      }
    }
    if (pass_down) return SubmitDown(piece, dest_);
    FinishPiece(piece, absl::OkStatus());
  }

  // ---- Completion ----

  void FinishPiece(Piece& piece, absl::Status status) {
    UserIo& io = *piece.io;
    pieces_.Put(&piece);
    if (!status.ok() && !io.failed.exchange(true, std::memory_order_relaxed))
      io.status = std::move(status);
    if (io.pieces_left.fetch_sub(1, std::memory_order_acq_rel) == 1) FinishIo(io);
  }

  // All pieces are done: a FUA write still needs a commit if the map changed.
  void FinishIo(UserIo& io) {
    if (io.status.ok() && (io.user->flags & kFua) != 0 && io.user->op != Op::kFlush) {
      internal::MutexLock lock(mu_);
      if (mark_seq_ > committed_seq_) {
        commit_waiters_.push_back(io);
        commit_cv_.SignalAll();
        return;
      }
    }
    CompleteUser(io, io.status);
  }

  void CompleteUser(UserIo& io, absl::Status status) {
    Request& user = *io.user;
    ios_.Put(&io);
    user.Complete(std::move(status));
    CloneListener* listener = listener_.load(std::memory_order_acquire);
    {
      internal::MutexLock lock(mu_);
      --active_ios_;
      if (active_ios_ > 0 || listener == nullptr) return SignalIfDrained();
      ++listener_calls_;  // holds Close back while the listener runs
    }
    listener->OnUserIdle();
    internal::MutexLock lock(mu_);
    --listener_calls_;
    SignalIfDrained();
  }

  // At a moment nothing is in flight: wakes Close, and frees the map if asked
  // (no request can be reading it, and new ones start under mu_ after this).
  void SignalIfDrained() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (active_ios_ != 0 || active_hydrations_ != 0 || listener_calls_ != 0) return;
    drained_cv_.SignalAll();
    if (release_map_ && metadata_.map().AllSet()) {
      metadata_.ReleaseMapIfComplete();
      release_map_ = false;
    }
  }

  // ---- Flushes and commits ----

  // A flush (or the flush in front of a PREFLUSH request): a commit when the
  // map changed, else a plain destination flush.
  void StartFlush(UserIo& io) {
    {
      internal::MutexLock lock(mu_);
      if (mark_seq_ > committed_seq_) {
        commit_waiters_.push_back(io);
        commit_cv_.SignalAll();
        return;
      }
    }
    io.pieces_left.store(1, std::memory_order_relaxed);
    Piece& piece = NewPiece(io);
    piece.down = Request::Flush();
    piece.down.context = &piece;
    piece.down.on_complete = [](Request& down, absl::Status status) {
      Piece& p = *static_cast<Piece*>(down.context);
      static_cast<Clone*>(p.owner)->FinishFlush(*p.io, &p, std::move(status));
    };
    dest_.Submit(piece.down);
  }

  void FinishFlush(UserIo& io, Piece* piece, absl::Status status) {
    if (piece != nullptr) pieces_.Put(piece);
    if (status.ok() && io.after_preflush) {
      io.after_preflush = false;
      return Dispatch(io);
    }
    CompleteUser(io, std::move(status));
  }

  void CommitLoop() {
    internal::MutexLock lock(mu_);
    for (;;) {
      commit_cv_.WaitFor(mu_, commit_interval_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !commit_waiters_.empty();
      });
      if (stopping_) return;
      if (commit_waiters_.empty() && (mark_seq_ == committed_seq_ || mode_ != CloneMode::kReadWrite))
        continue;  // nothing to commit, or nothing that can be
      mu_.Unlock();
      (void)RunCommit();
      mu_.Lock();
    }
  }

  // One commit: seal, flush the destination, persist; then completes the
  // requests that waited for it. Serialised by commit_mu_. Outside rw it
  // fails: the marks a failed commit dropped stay owed (their writes were
  // acknowledged and are not durable), and nothing can commit them.
  absl::Status RunCommit() {
    internal::MutexLock commit_lock(commit_mu_);
    internal::UserIoList waiters;
    uint64_t sealed_seq = 0;
    absl::Status status;
    {
      internal::MutexLock lock(mu_);
      waiters.swap(commit_waiters_);
      if (mode_ == CloneMode::kReadWrite) {
        sealed_seq = mark_seq_;
        metadata_.Seal();
      } else {
        status = ModeError(Op::kFlush);
      }
    }
    if (status.ok()) {
      status = Flush(dest_);
      if (status.ok()) status = metadata_.CommitSealed();
      if (status.ok()) {
        internal::MutexLock lock(mu_);
        committed_seq_ = std::max(committed_seq_, sealed_seq);
      } else {
        EnterReadOnly(status);
      }
    }
    while (!waiters.empty()) {
      UserIo& io = waiters.front();
      waiters.pop_front();
      if (io.user->op == Op::kFlush || io.after_preflush) {
        FinishFlush(io, nullptr, status);
      } else {
        CompleteUser(io, status);
      }
    }
    return status;
  }

  // After a failed commit: ro with the committed map reloaded, or Fail when
  // even that cannot be read. Runs under commit_mu_.
  void EnterReadOnly(const absl::Status& cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) {
    {
      internal::MutexLock lock(mu_);
      if (mode_ != CloneMode::kReadWrite) return;
      mode_ = CloneMode::kReadOnly;
    }
    absl::Status reloaded = metadata_.ReloadCommitted();
    CloneMode mode = CloneMode::kReadOnly;
    {
      // committed_seq_ stays behind mark_seq_: the marks the reload dropped
      // remain owed, so every later FLUSH and FUA fails (dm-clone keeps its
      // map "changed" after an abort).
      internal::MutexLock lock(mu_);
      if (!reloaded.ok()) mode_ = mode = CloneMode::kFail;
    }
    if (events_ == nullptr) return;
    events_->OnModeChange(CloneMode::kReadOnly, cause);
    if (mode == CloneMode::kFail) events_->OnModeChange(mode, reloaded);
  }

  absl::Status ModeError(Op op) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::InternalError(absl::StrCat(
        OpName(op), " refused: the clone's metadata is ",
        mode_ == CloneMode::kFail ? "unusable (mode Fail)" : "read-only after a failed commit (mode ro)",
        "; reopen the clone"));
  }

  Source& source_;
  Dest& dest_;
  CopierT& copier_;
  Metadata& metadata_;
  const CloneGeometry geometry_;
  const DeviceInfo info_;
  const uint64_t piece_limit_;
  const bool discard_passdown_;
  const std::chrono::milliseconds commit_interval_;
  CloneEvents* const events_;
  const bool skip_holes_;
  const std::optional<Op> zeroing_op_;  // how the destination zeroes a hole
  SourceAllocation allocation_;
  std::atomic<CloneListener*> listener_{nullptr};

  internal::ObjectPool<UserIo> ios_;
  internal::ObjectPool<Piece> pieces_;
  internal::ObjectPool<Hydration> hydration_pool_;

  mutable internal::Mutex mu_;
  internal::HydrationIndex hydrations_ ABSL_GUARDED_BY(mu_);
  uint64_t hydrating_regions_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t copying_regions_ ABSL_GUARDED_BY(mu_) = 0;  // of hydrations not zeroes_only
  uint64_t active_hydrations_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t active_ios_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t listener_calls_ ABSL_GUARDED_BY(mu_) = 0;
  internal::CondVar hydration_done_cv_;  // every hydration's end
  absl::Status last_hydration_error_ ABSL_GUARDED_BY(mu_);
  uint64_t copied_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t zeroed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool release_map_ ABSL_GUARDED_BY(mu_) = false;
  internal::CondVar drained_cv_;
  // Every MarkHydrated bumps mark_seq_; a commit that sealed at sequence S
  // sets committed_seq_ = S. Changed since the last commit: mark_seq_ > committed_seq_.
  uint64_t mark_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t committed_seq_ ABSL_GUARDED_BY(mu_) = 0;
  internal::UserIoList commit_waiters_ ABSL_GUARDED_BY(mu_);
  internal::CondVar commit_cv_;
  CloneMode mode_ ABSL_GUARDED_BY(mu_) = CloneMode::kReadWrite;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  internal::Mutex commit_mu_;
  std::thread committer_;
};

}  // namespace blkclone

// CloneSession: a clone running in this process, the one way to run one.
//
// A session owns the three devices, the persistent metadata, the rate limiter,
// the copiers, the engine and its hydrator; it builds them in that order and
// tears them down in the reverse order on every path, failures included.
//   - Create formats a blank metadata device, or takes over metadata that can
//     only be this clone's (same geometry, not finished, not needing a check);
//     it refuses anything else. Open only opens: a blank metadata device is an
//     error, never formatted; so is a finished clone.
//   - HydrateAll copies what is left and returns when every region is
//     hydrated, or says why it cannot go on.
//   - Finalize refuses a clone that is not fully hydrated; otherwise it makes
//     the destination durable, then records the clone as finished.
//   - Close is prompt whatever the rate limit: it stops background hydration
//     and lifts the limit before it waits for the copies in flight.
//
//   BLKCLONE_ASSIGN_OR_RETURN(
//       std::unique_ptr<blkclone::CloneSession> session,
//       blkclone::CloneSession::Create({std::move(source), std::move(dest), std::move(meta)},
//                                      64 << 10, {.rate_limit = 100 << 20}));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(session->clone(), 0, data));
//   BLKCLONE_RETURN_IF_ERROR(session->HydrateAll());
//   BLKCLONE_RETURN_IF_ERROR(session->Finalize());
//
// Threading: every method but Close and Finalize may run on any thread, at
// any time before the session is destroyed.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/any_copier.hpp"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/control.hpp"
#include "blkclone/events.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/paced_copier.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/rate_limiter.hpp"

namespace blkclone {

using SessionCopier = PacedCopier<AnyCopier>;
using SessionClone = Clone<AnyBlockDevice, AnyBlockDevice, SessionCopier>;

// The devices a session takes ownership of.
struct SessionDevices {
  AnyBlockDevice source;  // read only
  AnyBlockDevice destination;
  AnyBlockDevice metadata;
};

// Copies in flight cap the rate from a slow source (threshold x region /
// latency needs as many at once as the threshold allows); 256 KiB buffers
// keep 64 of them to 16 MiB.
inline constexpr BufferedCopierOptions kSessionBufferedCopier = {.chunk_size = 256 << 10,
                                                                 .max_in_flight = 64};

struct SessionOptions {
  // Background hydration: dm-clone's defaults (threshold 1, batch 1), plus
  // hot regions and retries (see HydratorOptions).
  HydratorOptions hydration;
  uint64_t rate_limit = 0;  // bytes per second of background copying; 0: unlimited
  bool discard_passdown = true;
  std::chrono::milliseconds commit_interval{1000};
  // Zero the source's holes on the destination instead of copying them
  // (CloneOptions::skip_holes).
  bool skip_holes = true;
  // Makes the copier for the session's devices (which outlive it), e.g.
  // FastestCopier (device_registry.hpp); unset: a BufferedCopier with
  // kSessionBufferedCopier.
  std::function<AnyCopier(AnyBlockDevice& source, AnyBlockDevice& destination)> copier = nullptr;
  // Receives the clone's and the hydrator's events; may be null; must outlive
  // the session.
  CloneEvents* events = nullptr;
};

// What Create found on the metadata device.
enum class MetadataOrigin { kFormatted, kTakenOver };

class CloneSession {
 public:
  // Starts a new clone of `devices.source` into `devices.destination` with
  // regions of `region_size` bytes (see MakeCloneGeometry). Errors:
  // kInvalidArgument for a region size, device sizes or a metadata device
  // that cannot hold this clone, and for a metadata device that holds
  // anything but zeroes or metadata this clone can take over (not blkclone
  // metadata, unreadable, another geometry, finished, in need of a check);
  // others as PersistentMetadata::Open's.
  static absl::StatusOr<std::unique_ptr<CloneSession>> Create(SessionDevices devices,
                                                              uint64_t region_size,
                                                              const SessionOptions& options);
  // Create's checks alone, writing nothing: what Create would do with the
  // metadata device, or its error.
  static absl::StatusOr<MetadataOrigin> CheckCreate(SessionDevices& devices,
                                                    uint64_t region_size);
  // Resumes the clone whose metadata is on `devices.metadata`. Errors:
  // kFailedPrecondition for a blank metadata device, a finished clone, or
  // devices whose sizes differ from the ones the metadata records; others as
  // PersistentMetadata::Open's.
  static absl::StatusOr<std::unique_ptr<CloneSession>> Open(SessionDevices devices,
                                                            const SessionOptions& options);
  // The same with metadata the caller has opened read-write.
  static absl::StatusOr<std::unique_ptr<CloneSession>> Open(
      AnyBlockDevice source, AnyBlockDevice destination,
      std::unique_ptr<PersistentMetadata> metadata, const SessionOptions& options);

  // Close()s.
  ~CloneSession();
  CloneSession(const CloneSession&) = delete;
  CloneSession& operator=(const CloneSession&) = delete;

  // The clone as a BlockDevice; requests fail once the session is closed.
  SessionClone& clone() { return *clone_; }
  const PersistentMetadata& metadata() const { return *metadata_; }
  MetadataOrigin origin() const { return origin_; }
  // Which copier copies: "io_uring", "copy_file_range", "buffered".
  const std::string& copier_name() const { return base_copier_.name(); }
  // Bytes hydrated when the session opened.
  uint64_t hydrated_bytes_at_open() const { return hydrated_bytes_at_open_; }

  // Hydrated bytes count copies as they advance, not only whole batches.
  HydrationProgress progress() const;
  CloneStatus Status() const;
  void Apply(const ControlMessage& message);
  // Why the metadata mode left rw (the failed commit's error); OK while rw.
  absl::Status ModeCause() const;

  // Runs background hydration (at a threshold of at least 1) until every
  // region is hydrated, calling `report` with the progress at least every
  // `report_every`; `report` returning false stops the wait (kCancelled),
  // leaving hydration running. kUnavailable when copy failures stopped
  // hydration; kInternal when the metadata mode left rw (with the cause);
  // kFailedPrecondition once the session is closed.
  absl::Status HydrateAll(
      absl::FunctionRef<bool(const HydrationProgress&)> report =
          [](const HydrationProgress&) { return true; },
      std::chrono::milliseconds report_every = std::chrono::milliseconds(100));

  // Closes the session and records the clone as finished; from then on the
  // destination is the device to use. kFailedPrecondition, changing nothing,
  // unless every region is hydrated.
  absl::Status Finalize();
  // The same for a clone that no session runs: its metadata (opened read-write)
  // and destination.
  static absl::Status Finalize(PersistentMetadata& metadata, AnyBlockDevice& destination);

  // Stops background hydration, lifts the rate limit, waits for the copies in
  // flight, commits and closes the clone. Idempotent; progress(), Status() and
  // ModeCause() answer afterwards.
  absl::Status Close();

  // The committed state of a clone that no session runs; `settings` and
  // `discard_passdown` are what a session would run it with.
  static CloneStatus OfflineStatus(const PersistentMetadata& metadata,
                                   const HydratorOptions& settings, bool discard_passdown);

 private:
  class Events;
  CloneSession(AnyBlockDevice source, AnyBlockDevice destination,
               std::unique_ptr<PersistentMetadata> metadata, MetadataOrigin origin,
               const SessionOptions& options);
  static absl::StatusOr<std::unique_ptr<CloneSession>> Start(
      AnyBlockDevice source, AnyBlockDevice destination,
      std::unique_ptr<PersistentMetadata> metadata, MetadataOrigin origin,
      const SessionOptions& options);

  // Declared in the order they are built; destroyed in reverse, so that the
  // hydrator goes after the clone is closed (see hydrator.hpp).
  AnyBlockDevice source_;
  AnyBlockDevice destination_;
  std::unique_ptr<PersistentMetadata> metadata_;
  const MetadataOrigin origin_;
  const bool discard_passdown_;
  RateLimiter limiter_;
  AnyCopier base_copier_;
  SessionCopier copier_;
  std::unique_ptr<Events> events_;
  std::unique_ptr<SessionClone> clone_;
  std::unique_ptr<Hydrator<SessionClone>> hydrator_;
  uint64_t hydrated_bytes_at_open_ = 0;
  mutable std::atomic<uint64_t> reported_bytes_{0};  // the most progress() has answered
  std::atomic<bool> closed_{false};
};

}  // namespace blkclone

// The clone-session life cycle: create or open, run, hydrate, finalize, close.
#include "blkclone/clone_session.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "blkclone/clone_geometry.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"

namespace blkclone {

// Keeps what HydrateAll waits for (completion, a stop, a mode change) and
// wakes it; passes every event on to the user's listener.
class CloneSession::Events final : public CloneEvents {
 public:
  explicit Events(CloneEvents* user) : user_(user) {}

  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    Note([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (mode_cause_.ok()) mode_cause_ = cause;
    });
    if (user_ != nullptr) user_->OnModeChange(mode, cause);
  }
  void OnHydrationStopped(uint64_t region, const absl::Status& cause) override {
    Note([]() {});
    if (user_ != nullptr) user_->OnHydrationStopped(region, cause);
  }
  void OnHydrationComplete() override {
    Note([]() {});
    if (user_ != nullptr) user_->OnHydrationComplete();
  }
  void OnSourceAllocationUnknown(const absl::Status& cause) override {
    if (user_ != nullptr) user_->OnSourceAllocationUnknown(cause);
  }

  absl::Status mode_cause() const {
    internal::MutexLock lock(mu_);
    return mode_cause_;
  }
  // Events so far, and a wait for the next one after `seen`, up to `timeout`.
  uint64_t count() const {
    internal::MutexLock lock(mu_);
    return count_;
  }
  void WaitAfter(uint64_t seen, std::chrono::milliseconds timeout) const {
    internal::MutexLock lock(mu_);
    cv_.WaitFor(mu_, timeout,
                [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ != seen; });
  }

 private:
  template <class F>
  void Note(F change) {
    internal::MutexLock lock(mu_);
    change();
    ++count_;
    cv_.SignalAll();
  }

  CloneEvents* const user_;
  mutable internal::Mutex mu_;
  mutable internal::CondVar cv_;
  absl::Status mode_cause_ ABSL_GUARDED_BY(mu_);
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace {

// Metadata found on a device can be taken over by a new clone only if it can
// be nothing but this clone's.
absl::Status CheckTakeOver(const StoredHeader& header, const CloneGeometry& geometry) {
  const std::string uuid = header.uuid.ToString();
  const CloneGeometry& stored = header.geometry;
  if (!(stored == geometry))
    return absl::InvalidArgumentError(absl::StrCat(
        "holds the metadata of another clone (uuid ", uuid, ": source ", stored.source_size,
        " bytes, destination ", stored.dest_size, " bytes, region ", stored.region_size,
        " bytes); zero its first 16 KiB to reuse the device"));
  if (header.finished())
    return absl::InvalidArgumentError(absl::StrCat("holds a finished clone (uuid ", uuid, ")"));
  if (header.needs_check)
    return absl::InvalidArgumentError("needs_check is set; check and repair it first");
  return absl::OkStatus();
}

absl::Status Finished(const Uuid& uuid) {
  return absl::FailedPreconditionError(absl::StrCat("metadata device: holds a finished clone (uuid ",
                                                    uuid.ToString(),
                                                    "); use its destination directly"));
}

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

}  // namespace

absl::StatusOr<MetadataOrigin> CloneSession::CheckCreate(SessionDevices& devices,
                                                        uint64_t region_size) {
  BLKCLONE_ASSIGN_OR_RETURN(
      const CloneGeometry geometry,
      MakeCloneGeometry(devices.source.info(), devices.destination.info(), region_size));
  if (const uint64_t required = PersistentMetadata::RequiredSize(geometry);
      devices.metadata.info().size < required)
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata device: ", devices.metadata.info().size, " bytes is too small; ",
        geometry.region_count, " regions need at least ", required, " bytes"));
  absl::StatusOr<StoredHeader> header = PersistentMetadata::ReadHeader(devices.metadata);
  if (absl::IsNotFound(header.status())) return MetadataOrigin::kFormatted;
  // Not blkclone metadata, or unreadable: the device is the wrong one to give.
  if (!header.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("metadata device: ", header.status().message()));
  BLKCLONE_RETURN_IF_ERROR(WithPrefix("metadata device: ", CheckTakeOver(*header, geometry)));
  return MetadataOrigin::kTakenOver;
}

absl::StatusOr<std::unique_ptr<CloneSession>> CloneSession::Create(SessionDevices devices,
                                                                   uint64_t region_size,
                                                                   const SessionOptions& options) {
  BLKCLONE_ASSIGN_OR_RETURN(const MetadataOrigin origin, CheckCreate(devices, region_size));
  BLKCLONE_ASSIGN_OR_RETURN(
      const CloneGeometry geometry,
      MakeCloneGeometry(devices.source.info(), devices.destination.info(), region_size));
  absl::StatusOr<std::unique_ptr<PersistentMetadata>> metadata =
      PersistentMetadata::Open(std::move(devices.metadata), geometry,
                               {.format_if_blank = origin == MetadataOrigin::kFormatted});
  if (!metadata.ok()) return WithPrefix("metadata device: ", metadata.status());
  return Start(std::move(devices.source), std::move(devices.destination), *std::move(metadata),
               origin, options);
}

absl::StatusOr<std::unique_ptr<CloneSession>> CloneSession::Open(SessionDevices devices,
                                                                 const SessionOptions& options) {
  absl::StatusOr<StoredHeader> header = PersistentMetadata::ReadHeader(devices.metadata);
  if (absl::IsNotFound(header.status()))
    return absl::FailedPreconditionError(
        "metadata device: blank; a clone is created, never opened, on a blank device");
  if (!header.ok()) return WithPrefix("metadata device: ", header.status());
  if (header->finished()) return Finished(header->uuid);
  absl::StatusOr<std::unique_ptr<PersistentMetadata>> metadata =
      PersistentMetadata::Open(std::move(devices.metadata), header->geometry);
  if (!metadata.ok()) return WithPrefix("metadata device: ", metadata.status());
  return Open(std::move(devices.source), std::move(devices.destination), *std::move(metadata),
              options);
}

absl::StatusOr<std::unique_ptr<CloneSession>> CloneSession::Open(
    AnyBlockDevice source, AnyBlockDevice destination,
    std::unique_ptr<PersistentMetadata> metadata, const SessionOptions& options) {
  if (metadata->finished()) return Finished(metadata->uuid());
  const CloneGeometry& geometry = metadata->geometry();
  if (const uint64_t size = destination.info().size; size != geometry.dest_size)
    return absl::FailedPreconditionError(absl::StrCat("destination: ", size, " bytes, not the ",
                                                      geometry.dest_size,
                                                      " bytes the metadata records"));
  if (const uint64_t size = source.info().size; size != geometry.source_size)
    return absl::FailedPreconditionError(
        absl::StrCat("source: ", size, " bytes, ",
                     size < geometry.source_size ? "shorter" : "longer", " than the ",
                     geometry.source_size, " bytes the metadata records"));
  return Start(std::move(source), std::move(destination), std::move(metadata),
               MetadataOrigin::kTakenOver, options);
}

absl::StatusOr<std::unique_ptr<CloneSession>> CloneSession::Start(
    AnyBlockDevice source, AnyBlockDevice destination,
    std::unique_ptr<PersistentMetadata> metadata, MetadataOrigin origin,
    const SessionOptions& options) {
  auto session = std::unique_ptr<CloneSession>(new CloneSession(
      std::move(source), std::move(destination), std::move(metadata), origin, options));
  BLKCLONE_ASSIGN_OR_RETURN(
      session->clone_,
      SessionClone::Create(session->source_, session->destination_, session->copier_,
                           *session->metadata_,
                           {.discard_passdown = options.discard_passdown,
                            .commit_interval = options.commit_interval,
                            .events = session->events_.get(),
                            .skip_holes = options.skip_holes}));
  const CloneGeometry& geometry = session->clone_->geometry();
  session->hydrated_bytes_at_open_ =
      std::min(session->metadata_->map().CountSet() * geometry.region_size, geometry.source_size);
  session->hydrator_ = std::make_unique<Hydrator<SessionClone>>(
      *session->clone_, options.hydration, session->events_.get());
  return session;
}

CloneSession::CloneSession(AnyBlockDevice source, AnyBlockDevice destination,
                           std::unique_ptr<PersistentMetadata> metadata, MetadataOrigin origin,
                           const SessionOptions& options)
    : source_(std::move(source)),
      destination_(std::move(destination)),
      metadata_(std::move(metadata)),
      origin_(origin),
      discard_passdown_(options.discard_passdown),
      limiter_(options.rate_limit),
      base_copier_(options.copier ? options.copier(source_, destination_)
                                  : AnyCopier(std::make_unique<BufferedCopier<AnyBlockDevice,
                                                                              AnyBlockDevice>>(
                                                  source_, destination_, kSessionBufferedCopier),
                                              "buffered")),
      copier_(base_copier_, limiter_),
      events_(std::make_unique<Events>(options.events)) {}

CloneSession::~CloneSession() { (void)Close(); }

HydrationProgress CloneSession::progress() const {
  // Regions being hydrated are read before the map, which they join when done.
  const uint64_t in_flight = clone_->hydrating_regions() * clone_->geometry().region_size;
  HydrationProgress progress = hydrator_->progress();
  if (progress.complete) return progress;
  // Whole regions as the map has them, plus the background copies that have
  // advanced since the session opened, at most the regions being hydrated;
  // never less than an earlier answer.
  const uint64_t advanced = hydrated_bytes_at_open_ + copier_.background_bytes_copied();
  const uint64_t estimate =
      std::min({std::max(progress.hydrated_bytes, advanced), progress.hydrated_bytes + in_flight,
                progress.total_bytes});
  uint64_t reported = reported_bytes_.load(std::memory_order_relaxed);
  while (reported < estimate &&
         !reported_bytes_.compare_exchange_weak(reported, estimate, std::memory_order_relaxed)) {
  }
  progress.hydrated_bytes = std::max(reported, estimate);
  return progress;
}

CloneStatus CloneSession::Status() const {
  return CollectStatus(*clone_, *hydrator_, limiter_);
}

void CloneSession::Apply(const ControlMessage& message) {
  ApplyMessage(message, *hydrator_, limiter_);
}

absl::Status CloneSession::ModeCause() const { return events_->mode_cause(); }

absl::Status CloneSession::HydrateAll(absl::FunctionRef<bool(const HydrationProgress&)> report,
                                      std::chrono::milliseconds report_every) {
  if (closed_) return absl::FailedPreconditionError("the session is closed");
  hydrator_->SetThreshold(std::max<uint64_t>(hydrator_->threshold(), 1));
  hydrator_->Enable();
  for (;;) {
    const uint64_t seen = events_->count();
    const HydrationProgress now = progress();
    if (now.complete) return absl::OkStatus();
    if (now.stopped)
      return absl::UnavailableError(absl::StrCat(
          "hydration stopped after repeated copy failures: ", now.stop_reason.message()));
    if (const CloneMode mode = clone_->mode(); mode != CloneMode::kReadWrite)
      return absl::InternalError(absl::StrCat("the metadata mode is ", ModeName(mode),
                                              " after a failed commit: ",
                                              events_->mode_cause().message()));
    if (!report(now)) return absl::CancelledError("hydration is still running");
    events_->WaitAfter(seen, report_every);
  }
}

absl::Status CloneSession::Finalize() {
  if (closed_) return absl::FailedPreconditionError("the session is closed");
  // SetFinished refuses an incomplete map, changing nothing; the session goes on.
  if (!metadata_->map().AllSet()) return metadata_->SetFinished();
  BLKCLONE_RETURN_IF_ERROR(Close());
  return Finalize(*metadata_, destination_);
}

absl::Status CloneSession::Finalize(PersistentMetadata& metadata, AnyBlockDevice& destination) {
  if (metadata.finished()) return absl::OkStatus();
  if (!metadata.map().AllSet()) return metadata.SetFinished();  // refused, as above
  // The flag must not be committed before the data it vouches for is durable.
  BLKCLONE_RETURN_IF_ERROR(Flush(destination));
  return metadata.SetFinished();
}

absl::Status CloneSession::Close() {
  // clone_ is null only when Start failed before it was made.
  if (closed_.exchange(true) || clone_ == nullptr) return absl::OkStatus();
  hydrator_->Disable();
  limiter_.SetRate(0);  // copies in flight then finish at once
  return clone_->Close();
}

CloneStatus CloneSession::OfflineStatus(const PersistentMetadata& metadata,
                                        const HydratorOptions& settings, bool discard_passdown) {
  const CloneGeometry& geometry = metadata.geometry();
  return CloneStatus{.active = false,
                     .metadata = metadata.usage(),
                     .region_size = geometry.region_size,
                     .source_size = geometry.source_size,
                     .hydrated_regions = metadata.map().CountSet(),
                     .total_regions = geometry.region_count,
                     .hydration_enabled = settings.start_enabled,
                     .discard_passdown = discard_passdown,
                     .hydration_threshold = settings.threshold,
                     .hydration_batch_size = settings.batch_size};
}

}  // namespace blkclone

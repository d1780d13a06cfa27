// Hydrator: background hydration of a clone, as dm-clone does it and beyond.
//
// dm-clone's policy: a cursor walks the regions and wraps; contiguous
// unhydrated regions are copied together, up to `batch_size` at once; at most
// `threshold` regions are being hydrated at any time (hydrations that user
// writes start count too, but are never held back; 0 stops background work);
// nothing new starts while user requests are in flight; it can start disabled
// (no_hydration) and be enabled or disabled at run time; completion is
// reported once.
//
// Beyond dm-clone:
//   - hot regions: a region read `hot_read_count` times while unhydrated is
//     copied ahead of the cursor (reads of unhydrated regions are slow: they
//     go to the source);
//   - a bandwidth limit through the RateLimiter that paces the clone's
//     copier (PacedCopier), changeable at run time;
//   - a failed copy is retried after an exponential backoff; after
//     `max_consecutive_failures` in a row background hydration stops and
//     CloneEvents::OnHydrationStopped names the region and the error (dm-clone
//     retries forever); Restart() or Enable() starts it again;
//   - progress: hydrated regions and bytes, data and holes apart (holes of
//     the source are zeroed, not copied), the recent copy rate, and an ETA
//     over the data still to copy;
//   - once everything is hydrated the region map's memory is released.
//
//   blkclone::Hydrator hydrator(*clone, {.threshold = 64, .batch_size = 16}, &events);
//   hydrator.WaitUntilComplete(std::chrono::hours(1));
//   (void)clone->Close();   // close the clone before destroying the hydrator
//
// Threading: one scheduler thread; the public methods are thread-safe. The
// clone calls the CloneListener methods from its own threads. Destroy the
// hydrator after closing the clone, or while no request is in flight.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "blkclone/clone_listener.hpp"
#include "blkclone/events.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/region_map.hpp"

namespace blkclone {

struct HydratorOptions {
  bool start_enabled = true;  // false: dm-clone's no_hydration
  uint64_t threshold = 1;     // hydration_threshold
  uint64_t batch_size = 1;    // hydration_batch_size
  bool hot_regions = true;
  uint32_t hot_read_count = 2;
  uint32_t max_consecutive_failures = 5;
  std::chrono::milliseconds first_retry_delay{10};  // doubles with each failure
  std::chrono::milliseconds max_retry_delay{2000};
};

struct HydrationProgress {
  uint64_t hydrated_regions = 0;
  uint64_t total_regions = 0;
  uint64_t hydrated_bytes = 0;
  uint64_t total_bytes = 0;
  // Once the source has described itself (data_known): its data, which
  // hydration copies, and its holes, which it zeroes; how much of each is
  // hydrated (an estimate while user writes hydrate regions too).
  bool data_known = false;
  uint64_t data_bytes = 0;
  uint64_t hole_bytes = 0;
  uint64_t hydrated_data_bytes = 0;
  uint64_t hydrated_hole_bytes = 0;
  double bytes_per_second = 0;        // data copied over the last few seconds
  std::optional<double> eta_seconds;  // only while hydration runs and moves
  bool enabled = false;
  bool complete = false;
  bool stopped = false;  // by repeated copy failures
  absl::Status stop_reason;
};

template <class CloneT>
class Hydrator final : public CloneListener {
 public:
  using Clock = std::chrono::steady_clock;

  Hydrator(CloneT& clone, const HydratorOptions& options, CloneEvents* events = nullptr)
      : clone_(clone), options_(options), events_(events), retry_(options),
        enabled_(options.start_enabled),
        threshold_(options.threshold), batch_size_(std::max<uint64_t>(options.batch_size, 1)) {
    clone_.SetListener(this);
    thread_ = std::thread([this] { Run(); });
    count_thread_ = std::thread([this] { CountData(); });
  }

  // Stops scheduling and waits for the copies it started.
  ~Hydrator() override {
    {
      internal::MutexLock lock(mu_);
      stopping_ = true;
      WakeLocked();
    }
    thread_.join();
    count_thread_.join();
    internal::MutexLock lock(mu_);
    cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return hydrations_in_flight_ == 0; });
    clone_.SetListener(nullptr);
  }
  Hydrator(const Hydrator&) = delete;
  Hydrator& operator=(const Hydrator&) = delete;

  // Enabling also restarts hydration stopped by copy failures.
  void Enable() { Update([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { enabled_ = true; ResetFailures(); }); }
  void Disable() { Update([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { enabled_ = false; }); }
  void Restart() { Update([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ResetFailures(); }); }
  void SetThreshold(uint64_t regions) {
    Update([this, regions]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { threshold_ = regions; });
  }
  void SetBatchSize(uint64_t regions) {
    Update([this, regions]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      batch_size_ = std::max<uint64_t>(regions, 1);
    });
  }
  // How copy failures are retried; applies from the next failure.
  void SetRetryPolicy(uint32_t max_consecutive_failures, std::chrono::milliseconds first_delay,
                      std::chrono::milliseconds max_delay) {
    Update([=, this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      retry_.max_consecutive_failures = std::max<uint32_t>(max_consecutive_failures, 1);
      retry_.first_retry_delay = first_delay;
      retry_.max_retry_delay = std::max(first_delay, max_delay);
    });
  }
  uint64_t threshold() const { return Get(&Hydrator::threshold_); }
  uint64_t batch_size() const { return Get(&Hydrator::batch_size_); }
  bool enabled() const { return Get(&Hydrator::enabled_); }

  HydrationProgress progress() const {
    const auto& geometry = clone_.geometry();
    const uint64_t hydrated = clone_.hydrated_regions();
    HydrationProgress p;
    p.hydrated_regions = hydrated;
    p.total_regions = geometry.region_count;
    p.total_bytes = geometry.source_size;
    p.hydrated_bytes = std::min(hydrated * geometry.region_size, geometry.source_size);
    if (hydrated == geometry.region_count) p.hydrated_bytes = geometry.source_size;
    const uint64_t copied = clone_.copied_bytes();
    internal::MutexLock lock(mu_);
    uint64_t to_copy = p.total_bytes - p.hydrated_bytes;
    if (data_) {
      // Data copied since the count left the regions it found unhydrated (a
      // region copied while it counted may count twice: an estimate).
      to_copy = hydrated == geometry.region_count
                    ? 0
                    : data_->unhydrated - std::min(data_->unhydrated, copied - copied_after_count_);
      p.data_known = true;
      p.data_bytes = data_->total;
      p.hole_bytes = p.total_bytes - data_->total;
      p.hydrated_data_bytes = std::min(data_->total - to_copy, p.hydrated_bytes);
      p.hydrated_hole_bytes =
          std::min(p.hydrated_bytes - p.hydrated_data_bytes, p.hole_bytes);
    }
    p.bytes_per_second = RateLocked(Clock::now());
    // No ETA while hydration does not run, whatever it copied lately.
    if (p.bytes_per_second > 0 && enabled_ && !stopped_ && !completed_ && threshold_ > 0)
      p.eta_seconds = static_cast<double>(to_copy) / p.bytes_per_second;
    p.enabled = enabled_;
    p.complete = completed_;
    p.stopped = stopped_;
    p.stop_reason = stop_reason_;
    return p;
  }

  // Regions of the background copies it started whose end it has not heard
  // (hole runs, zeroed without a copy, not counted).
  uint64_t regions_in_flight() const { return Get(&Hydrator::in_flight_); }
  // Changes and events so far (a count), and whether the scheduler has since
  // considered the first `changes` of them and gone to sleep with nothing to
  // start until the next one: for checks that something started no copy,
  // without waiting for time to pass.
  uint64_t changes() const { return Get(&Hydrator::wakeups_); }
  bool SettledAfter(uint64_t changes) const { return Get(&Hydrator::slept_after_) > changes; }

  // Waits until every region is hydrated; false on timeout.
  bool WaitUntilComplete(std::chrono::milliseconds timeout) {
    internal::MutexLock lock(mu_);
    return cv_.WaitFor(mu_, timeout,
                       [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completed_; });
  }

  // CloneListener.
  void OnUnhydratedRead(uint64_t region) override {
    if (!options_.hot_regions) return;
    internal::MutexLock lock(mu_);
    if (read_counts_.size() >= kMaxTrackedRegions) read_counts_.clear();  // forget old hints
    if (++read_counts_[region] == options_.hot_read_count) {
      hot_.push_back(region);
      WakeLocked();
    }
  }
  void OnUserIdle() override {
    internal::MutexLock lock(mu_);
    WakeLocked();
  }
  void OnHydrationDone(const HydrationEnd& end) override {
    const absl::Status& status = end.status;
    std::optional<absl::Status> stopped;
    {
      internal::MutexLock lock(mu_);
      if (end.copied_bytes > 0) copied_.push_back({Clock::now(), end.copied_bytes});
      if (end.background) {
        // As Run counted it; this may come first (a wrapping subtraction).
        in_flight_ -= end.zeroes_only ? 0 : end.region_count;
        --hydrations_in_flight_;
        if (status.ok()) {
          consecutive_failures_ = 0;
        } else if (++consecutive_failures_ >= retry_.max_consecutive_failures) {
          stopped_ = true;
          stop_reason_ = status;
          stopped = status;
        } else {
          // Retry the same region after a backoff that doubles each time.
          const auto delay = std::min<std::chrono::milliseconds>(
              retry_.max_retry_delay,
              retry_.first_retry_delay * (uint64_t{1} << std::min(consecutive_failures_ - 1, 20u)));
          retry_at_ = Clock::now() + delay;
          retry_region_ = end.first_region;
        }
      }
      WakeLocked();
    }
    if (stopped && events_ != nullptr) events_->OnHydrationStopped(end.first_region, *stopped);
  }

 private:
  static constexpr size_t kMaxTrackedRegions = 4096;
  static constexpr std::chrono::seconds kRateWindow{3};
  struct Copied {
    Clock::time_point at;
    uint64_t bytes;
  };

  template <class F>
  void Update(F change) {
    internal::MutexLock lock(mu_);
    change();
    WakeLocked();
  }
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++wakeups_;
    cv_.SignalAll();
  }
  // Sleeps until an event or change after `seen` (every hydration's end, the
  // user going idle, a setting) or, with a retry pending, until it falls due:
  // the only thing no event announces.
  void SleepLocked(uint64_t seen) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || wakeups_ != seen;
    };
    if (retry_region_ && enabled_ && !stopped_ && Clock::now() < retry_at_) {
      cv_.WaitFor(mu_, std::chrono::ceil<std::chrono::milliseconds>(retry_at_ - Clock::now()),
                  woken);
    } else {
      cv_.Wait(mu_, woken);
    }
  }
  // A guarded field's value, read under the lock (by member pointer: the
  // lock is taken here, not held by the caller).
  template <class T>
  T Get(T Hydrator::*field) const {
    internal::MutexLock lock(mu_);
    return this->*field;
  }
  void ResetFailures() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stopped_ = false;
    stop_reason_ = absl::OkStatus();
    consecutive_failures_ = 0;
    retry_at_ = Clock::time_point();
    retry_region_ = std::nullopt;
  }

  // Counts the source's data once, for the progress (asking the source for
  // every window, beside the copying).
  void CountData() {
    const auto data = clone_.CountDataBytes();
    const uint64_t copied = clone_.copied_bytes();
    internal::MutexLock lock(mu_);
    copied_after_count_ = copied;
    data_ = data;
  }

  // Bytes copied over the last kRateWindow, per second of that window, or of
  // the time since the first background copy started when that is shorter (so
  // a young run is not under-reported).
  double RateLocked(Clock::time_point now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t bytes = 0;
    for (const Copied& c : copied_) {
      if (now - c.at <= kRateWindow) bytes += c.bytes;
    }
    if (bytes == 0) return 0;
    const auto span = first_copy_at_ == Clock::time_point()
                          ? Clock::duration(kRateWindow)
                          : std::min<Clock::duration>(kRateWindow, now - first_copy_at_);
    return static_cast<double>(bytes) /
           std::max(std::chrono::duration<double>(span).count(), 1e-3);
  }

  bool MayStart(Clock::time_point now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return enabled_ && !stopped_ && !completed_ && threshold_ > 0 && now >= retry_at_;
  }

  // The region to copy next: one to retry, a hot one, or the cursor's next
  // unhydrated region (wrapping); true when the cursor is not to move.
  std::pair<uint64_t, bool> PickRegion() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (retry_region_) {
      const uint64_t region = *std::exchange(retry_region_, std::nullopt);
      if (!clone_.IsHydrated(region)) return {region, true};
    }
    while (!hot_.empty()) {
      const uint64_t region = hot_.front();
      hot_.pop_front();
      read_counts_.erase(region);
      if (!clone_.IsHydrated(region)) return {region, true};
    }
    uint64_t region = clone_.NextUnhydrated(cursor_);
    if (region == clone_.geometry().region_count) region = clone_.NextUnhydrated(0);
    return {region, false};
  }

  void Run() {
    internal::MutexLock lock(mu_);
    while (!stopping_) {
      const uint64_t seen = wakeups_;  // what this round decides on
      const auto now = Clock::now();
      while (!copied_.empty() && now - copied_.front().at > kRateWindow) copied_.pop_front();
      if (!completed_ && clone_.AllHydrated()) {
        // The event comes before waiters wake, so they can count on it.
        if (events_ != nullptr) {
          mu_.Unlock();
          events_->OnHydrationComplete();
          mu_.Lock();
        }
        completed_ = true;  // from here on it no longer reads the map's words
        clone_.ReleaseMapWhenComplete();
        WakeLocked();
        continue;
      }
      // Its own copies count until it has heard of their end, so a failure is
      // handled (and retried) before anything else starts.
      // Hole runs cost no copy and do not count.
      const uint64_t hydrating = std::max(clone_.copying_regions(), in_flight_);
      // Pause while the user has requests in flight; the clone signals idleness.
      if (!MayStart(now) || hydrating >= threshold_ || clone_.active_requests() > 0) {
        // Settled: nothing to start until something changes (no retry due later).
        if (!(enabled_ && !stopped_ && now < retry_at_)) slept_after_ = seen + 1;
        SleepLocked(seen);
        continue;
      }
      const auto [region, aside] = PickRegion();
      const uint64_t count = std::min(batch_size_, threshold_ - hydrating);
      mu_.Unlock();
      auto started = clone_.StartBackgroundHydration(region, count);  // StatusOr<StartedHydration>
      mu_.Lock();
      if (!started.ok()) {
        // ro, Fail or closing: nothing more can be hydrated by this clone.
        enabled_ = false;
        continue;
      }
      if (started->regions == 0) {
        // Being hydrated already: move on, and wait if every candidate may be.
        if (!aside) cursor_ = region + 1;
        if (hydrating > 0) SleepLocked(seen);  // until one of them ends
        continue;
      }
      in_flight_ += started->zeroes_only ? 0 : started->regions;
      ++hydrations_in_flight_;
      if (first_copy_at_ == Clock::time_point()) first_copy_at_ = Clock::now();
      if (!aside) cursor_ = region + started->regions;
    }
  }

  CloneT& clone_;
  const HydratorOptions options_;
  CloneEvents* const events_;
  mutable internal::Mutex mu_;
  internal::CondVar cv_;
  HydratorOptions retry_ ABSL_GUARDED_BY(mu_);  // its retry fields, changeable
  bool enabled_ ABSL_GUARDED_BY(mu_);
  uint64_t threshold_ ABSL_GUARDED_BY(mu_);
  uint64_t batch_size_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t slept_after_ ABSL_GUARDED_BY(mu_) = 0;  // 1 + wakeups_ seen when last settled
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status stop_reason_ ABSL_GUARDED_BY(mu_);
  uint32_t consecutive_failures_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point retry_at_ ABSL_GUARDED_BY(mu_);
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<uint64_t> retry_region_ ABSL_GUARDED_BY(mu_);
  // Regions of the copies it started (hole runs not counted) whose end it has not heard.
  uint64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hydrations_in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // background ones it started, all kinds
  std::deque<uint64_t> hot_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, uint32_t> read_counts_ ABSL_GUARDED_BY(mu_);
  std::deque<Copied> copied_ ABSL_GUARDED_BY(mu_);
  Clock::time_point first_copy_at_ ABSL_GUARDED_BY(mu_);
  std::optional<typename CloneT::DataBytes> data_ ABSL_GUARDED_BY(mu_);
  uint64_t copied_after_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  std::thread count_thread_;
};

}  // namespace blkclone

// A Copier wrapper for engine tests: sees, holds and fails copies.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <vector>

#include "blkclone/copier.hpp"
#include "blkclone/internal/mutex.hpp"

namespace blkclone {

// Forwards copies, logging and counting them (and the bytes in flight); can
// hold them back until Release(), and can fail the next ones with a given error.
template <Copier Inner>
class ControlledCopier {
 public:
  explicit ControlledCopier(Inner& inner) : inner_(inner) {}
  void Copy(CopyJob& job) noexcept {
    jobs_.fetch_add(1);
    {
      internal::MutexLock lock(mu_);
      log_.push_back({job.offset, job.length, job.background});
      in_flight_bytes_ += job.length;
      max_in_flight_bytes_ = std::max(max_in_flight_bytes_, in_flight_bytes_);
      if (holding_) {
        held_.push_back(&job);
        return;
      }
    }
    Forward(job);
  }
  void Hold() {
    internal::MutexLock lock(mu_);
    holding_ = true;
  }
  void FailNext(int count, absl::Status error) {
    internal::MutexLock lock(mu_);
    failures_left_ = count;
    failure_ = std::move(error);
  }
  // Stops holding and forwards every held job.
  void Release() {
    std::deque<CopyJob*> held;
    {
      internal::MutexLock lock(mu_);
      holding_ = false;
      held.swap(held_);
    }
    for (CopyJob* job : held) Forward(*job);
  }
  int jobs() const { return jobs_.load(); }
  struct Started {
    uint64_t offset, length;
    bool background;
  };
  std::vector<Started> log() {
    internal::MutexLock lock(mu_);
    return log_;
  }
  // The most bytes that were being copied at once.
  uint64_t max_in_flight_bytes() {
    internal::MutexLock lock(mu_);
    return max_in_flight_bytes_;
  }
  size_t held() {
    internal::MutexLock lock(mu_);
    return held_.size();
  }

 private:
  struct Tracked {
    ControlledCopier* self;
    CopyJob* job;
    CopyJob forwarded;
  };

  // Copies through a job of its own to see the end and count bytes in flight.
  void Forward(CopyJob& job) {
    absl::Status failure;
    {
      internal::MutexLock lock(mu_);
      if (failures_left_ > 0) {
        --failures_left_;
        failure = failure_;
      }
    }
    if (!failure.ok()) return Done(job, failure);
    auto* tracked = new Tracked{this, &job, {}};
    tracked->forwarded.offset = job.offset;
    tracked->forwarded.length = job.length;
    tracked->forwarded.background = job.background;
    tracked->forwarded.context = tracked;
    tracked->forwarded.on_complete = [](CopyJob& forwarded, absl::Status status) {
      std::unique_ptr<Tracked> t(static_cast<Tracked*>(forwarded.context));
      t->self->Done(*t->job, std::move(status));
    };
    inner_.Copy(tracked->forwarded);
  }

  void Done(CopyJob& job, absl::Status status) {
    {
      internal::MutexLock lock(mu_);
      in_flight_bytes_ -= job.length;
    }
    job.Complete(std::move(status));
  }

  Inner& inner_;
  std::atomic<int> jobs_{0};
  internal::Mutex mu_;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<CopyJob*> held_ ABSL_GUARDED_BY(mu_);
  std::vector<Started> log_ ABSL_GUARDED_BY(mu_);
  uint64_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t max_in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

// DelayDevice: makes any device asynchronous and out of order, e.g. the
// inline-completing MemoryDevice into something that behaves like a disk.
//
// Each request waits for a delay drawn from [min_delay, max_delay] (seeded),
// then one of the device's worker threads forwards it to the inner device, so
// completions never run inside Submit and overtake each other. Forwarding order
// is free: the contract orders a flush only after writes that completed before
// it was submitted, and those have already been forwarded.
//
//   auto memory = *blkclone::MemoryDevice::Create({.size = 1 << 20});
//   blkclone::DelayDevice disk(*memory, {.min_delay = std::chrono::microseconds(50),
//                                        .max_delay = std::chrono::microseconds(500)});
//   (void)blkclone::WriteAt(disk, 0, data);  // completes on a worker thread
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/any_block_device.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/testing/device_wrapper.hpp"

namespace blkclone {

struct DelayOptions {
  std::chrono::microseconds min_delay{0};
  std::chrono::microseconds max_delay{200};  // below min_delay counts as min_delay
  int worker_threads = 2;                    // at least one runs
  uint64_t seed = 1;
};

// Threads: Submit on any thread queues the request; the workers forward due
// requests; the inner device completes them on a thread of its own choosing.
template <BlockDevice Inner>
class DelayDevice {
 public:
  explicit DelayDevice(Inner& inner, const DelayOptions& options = {})
      : inner_(inner),
        rng_(options.seed),
        delay_us_(options.min_delay.count(),
                  std::max(options.min_delay, options.max_delay).count()) {
    for (int i = 0; i < std::max(options.worker_threads, 1); ++i)
      workers_.emplace_back([this] { WorkerLoop(); });
  }
  // Forwards what is still waiting without its delay, and returns once every
  // request submitted here has completed.
  ~DelayDevice() {
    {
      internal::MutexLock lock(mu_);
      stopping_ = true;
      work_cv_.SignalAll();
    }
    for (std::thread& worker : workers_) worker.join();
    internal::MutexLock lock(mu_);
    idle_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return unfinished_ == 0; });
  }
  DelayDevice(const DelayDevice&) = delete;
  DelayDevice& operator=(const DelayDevice&) = delete;

  const DeviceInfo& info() const { return inner_.info(); }
  void Submit(Request& request) noexcept {
    internal::MutexLock lock(mu_);
    ++unfinished_;
    pending_.emplace(Clock::now() + std::chrono::microseconds(delay_us_(rng_)), &request);
    work_cv_.SignalAll();
  }

 private:
  using Clock = std::chrono::steady_clock;

  void WorkerLoop() {
    while (Request* request = TakeDue()) {
      internal::ForwardCopy(inner_, *request, [this](Request& r, absl::Status status) {
        r.Complete(std::move(status));
        internal::MutexLock lock(mu_);
        --unfinished_;
        idle_cv_.SignalAll();
      });
    }
  }

  // Waits for the earliest request to fall due (at once when stopping) and takes
  // it; nullptr once stopping with nothing left.
  Request* TakeDue() {
    internal::MutexLock lock(mu_);
    for (;;) {
      if (pending_.empty()) {
        if (stopping_) return nullptr;
        work_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !pending_.empty();
        });
        continue;
      }
      const auto first = pending_.begin();
      const Clock::time_point due = first->first;
      const Clock::time_point now = Clock::now();
      if (stopping_ || due <= now) {
        Request* request = first->second;
        pending_.erase(first);
        return request;
      }
      // Wakes early for an earlier request; another worker may take this one meanwhile.
      work_cv_.WaitFor(mu_, due - now, [this, due]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || pending_.empty() || pending_.begin()->first < due;
      });
    }
  }

  Inner& inner_;
  internal::Mutex mu_;
  internal::CondVar work_cv_;  // a request was queued, or stopping_ was set
  internal::CondVar idle_cv_;  // unfinished_ went down
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::uniform_int_distribution<int64_t> delay_us_ ABSL_GUARDED_BY(mu_);
  std::multimap<Clock::time_point, Request*> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t unfinished_ ABSL_GUARDED_BY(mu_) = 0;  // submitted, not yet completed
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

static_assert(BlockDevice<DelayDevice<AnyBlockDevice>>);

}  // namespace blkclone

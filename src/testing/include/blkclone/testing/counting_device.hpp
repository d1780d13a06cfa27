// CountingDevice: tallies what passes through to another device, to assert how
// code uses a device (how much it reads, whether it flushes, how deep it queues).
//
// Counts requests and bytes per op at submission and at completion, requests
// carrying kFua or kPreflush, and requests in flight now and at most, in all and
// per op. An optional observer sees each request as it is submitted.
//
//   blkclone::CountingDevice counted(*memory_device);
//   counted.SetObserver([](const blkclone::Request& r) { EXPECT_LE(r.length, 1u << 20); });
//   RunWorkload(counted);
//   EXPECT_EQ(counted.Snapshot().submitted[blkclone::Op::kFlush], 1u);
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/testing/device_wrapper.hpp"

namespace blkclone {

struct Counts {
  PerOp<uint64_t> submitted;
  PerOp<uint64_t> completed;        // with any status
  PerOp<uint64_t> failed;           // completed with an error
  PerOp<uint64_t> bytes_submitted;  // sum of lengths
  PerOp<uint64_t> bytes_completed;  // sum of lengths of requests that succeeded
  PerOp<uint64_t> in_flight;
  PerOp<uint64_t> max_in_flight;
  uint64_t total_in_flight = 0;
  uint64_t max_total_in_flight = 0;
  uint64_t fua = 0;       // submitted with kFua
  uint64_t preflush = 0;  // submitted with kPreflush
};

template <BlockDevice Inner>
class CountingDevice {
 public:
  // Runs on the submitting thread, before the request reaches the inner device.
  using Observer = std::function<void(const Request&)>;

  explicit CountingDevice(Inner& inner) : inner_(inner) {}

  const DeviceInfo& info() const { return inner_.info(); }
  void Submit(Request& request) noexcept {
    std::shared_ptr<const Observer> observer;
    {
      internal::MutexLock lock(mu_);
      observer = observer_;
      ++counts_.submitted[request.op];
      counts_.bytes_submitted[request.op] += request.length;
      if (request.flags & kFua) ++counts_.fua;
      if (request.flags & kPreflush) ++counts_.preflush;
      counts_.max_in_flight[request.op] =
          std::max(counts_.max_in_flight[request.op], ++counts_.in_flight[request.op]);
      counts_.max_total_in_flight =
          std::max(counts_.max_total_in_flight, ++counts_.total_in_flight);
    }
    if (observer) (*observer)(request);
    internal::ForwardCopy(inner_, request, [this](Request& r, absl::Status status) {
      CountCompletion(r, status.ok());
      r.Complete(std::move(status));
    });
  }

  // An empty observer removes the current one.
  void SetObserver(Observer observer) {
    auto shared = observer ? std::make_shared<const Observer>(std::move(observer)) : nullptr;
    internal::MutexLock lock(mu_);
    observer_ = std::move(shared);
  }
  Counts Snapshot() const {
    internal::MutexLock lock(mu_);
    return counts_;
  }
  // Zeroes the tallies but not what is in flight, whose completions count after
  // the reset; the maxima restart from what is in flight now.
  void Reset() {
    internal::MutexLock lock(mu_);
    Counts fresh;
    fresh.in_flight = fresh.max_in_flight = counts_.in_flight;
    fresh.total_in_flight = fresh.max_total_in_flight = counts_.total_in_flight;
    counts_ = fresh;
  }

 private:
  void CountCompletion(const Request& request, bool ok) {
    internal::MutexLock lock(mu_);
    ++counts_.completed[request.op];
    if (ok) {
      counts_.bytes_completed[request.op] += request.length;
    } else {
      ++counts_.failed[request.op];
    }
    --counts_.in_flight[request.op];
    --counts_.total_in_flight;
  }

  Inner& inner_;
  mutable internal::Mutex mu_;
  Counts counts_ ABSL_GUARDED_BY(mu_);
  // Shared so that Submit calls it outside the lock while SetObserver replaces it.
  std::shared_ptr<const Observer> observer_ ABSL_GUARDED_BY(mu_);
};

static_assert(BlockDevice<CountingDevice<AnyBlockDevice>>);

}  // namespace blkclone

// GatedDevice: holds the requests a test picks until it releases them, so a
// request can be kept in flight across an event (a failed commit, a switch to
// ro). InFlight: one request submitted without waiting, awaited with a deadline.
//
//   GatedDevice gated(inner);
//   gated.Hold([](const Request& r) { return r.op == Op::kFlush; });
//   InFlight flush(clone, Request::Flush());
//   ASSERT_TRUE(gated.WaitHeld(1));
//   gated.Release();  // forwards what was held, holds nothing more
//   EXPECT_FALSE(flush.Await()->ok());
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/block_device.hpp"
#include "blkclone/testing/device_wrapper.hpp"

namespace blkclone::testing {

inline constexpr std::chrono::seconds kTestDeadline{60};

template <BlockDevice Inner>
class GatedDevice {
 public:
  using Picker = std::function<bool(const Request&)>;

  explicit GatedDevice(Inner& inner) : inner_(inner) {}

  const DeviceInfo& info() const { return inner_.info(); }

  void Submit(Request& request) noexcept {
    {
      std::lock_guard lock(mu_);
      if (picker_ && picker_(request)) {
        held_.push_back(&request);
        held_cv_.notify_all();
        return;
      }
      ++forwarded_[request.op];
    }
    inner_.Submit(request);
  }

  // Requests `picker` accepts from now on are held.
  void Hold(Picker picker) {
    std::lock_guard lock(mu_);
    picker_ = std::move(picker);
  }

  // True once `count` requests are held; false if the deadline passes first.
  [[nodiscard]] bool WaitHeld(size_t count) {
    std::unique_lock lock(mu_);
    return held_cv_.wait_for(lock, kTestDeadline, [&] { return held_.size() >= count; });
  }

  // Stops holding and forwards every held request, in arrival order.
  void Release() {
    std::vector<Request*> held;
    {
      std::lock_guard lock(mu_);
      picker_ = nullptr;
      held.swap(held_);
      for (Request* request : held) ++forwarded_[request->op];
    }
    for (Request* request : held) inner_.Submit(*request);
  }

  // Requests of `op` passed on to the inner device so far.
  uint64_t forwarded(Op op) const {
    std::lock_guard lock(mu_);
    return forwarded_[op];
  }

 private:
  Inner& inner_;
  mutable std::mutex mu_;
  std::condition_variable held_cv_;
  Picker picker_;
  std::vector<Request*> held_;
  PerOp<uint64_t> forwarded_;
};

// A request submitted on construction; Await() gives its status, or nothing if
// it has not completed by the deadline.
class InFlight {
 public:
  template <BlockDevice D>
  InFlight(D& device, Request request) : request_(request) {
    request_.context = this;
    request_.on_complete = [](Request& r, absl::Status status) {
      auto& self = *static_cast<InFlight*>(r.context);
      std::lock_guard lock(self.mu_);
      self.status_ = std::move(status);
      self.done_cv_.notify_all();
    };
    device.Submit(request_);
  }
  // A request still in flight past the deadline ends the test: its completion
  // would write into freed memory.
  ~InFlight() {
    if (Await()) return;
    std::fprintf(stderr, "a request was still in flight %llds after the test\n",
                 static_cast<long long>(kTestDeadline.count()));
    std::abort();
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  std::optional<absl::Status> Await() {
    std::unique_lock lock(mu_);
    done_cv_.wait_for(lock, kTestDeadline, [&] { return status_.has_value(); });
    return status_;
  }
  bool done() {
    std::lock_guard lock(mu_);
    return status_.has_value();
  }

 private:
  Request request_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::optional<absl::Status> status_;
};

}  // namespace blkclone::testing

// RateLimiter: a bandwidth limit in bytes per second for background copies.
//
// A token bucket whose depth is one 100 ms window of the rate: callers take
// pieces of at most WindowBytes() and wait what Reserve() says, so the rate
// holds over every 100 ms window without lumps. The rate can change at any
// time; 0 means unlimited.
//
//   blkclone::RateLimiter limiter(50 << 20);              // 50 MiB/s
//   auto wait = limiter.Reserve(piece_bytes, Clock::now());
//   std::this_thread::sleep_for(wait);                     // or schedule the piece
#pragma once

#include <chrono>
#include <cstdint>

#include "blkclone/internal/mutex.hpp"

namespace blkclone {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kWindow{100};

  explicit RateLimiter(uint64_t bytes_per_second = 0) : rate_(bytes_per_second) {}

  void SetRate(uint64_t bytes_per_second);
  uint64_t rate() const;
  // The most worth taking at once: one window of the rate (unlimited: 0).
  uint64_t WindowBytes() const;
  // Takes `bytes` at `now`; returns how long to wait before using them.
  Clock::duration Reserve(uint64_t bytes, Clock::time_point now);

 private:
  mutable internal::Mutex mu_;
  uint64_t rate_ ABSL_GUARDED_BY(mu_);
  double tokens_ ABSL_GUARDED_BY(mu_) = 0;  // negative: debt to wait off
  Clock::time_point last_ ABSL_GUARDED_BY(mu_) = Clock::now();
};

}  // namespace blkclone

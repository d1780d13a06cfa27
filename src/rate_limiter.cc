// RateLimiter: token bucket with one window of depth and debt for waiting.
#include "blkclone/rate_limiter.hpp"

#include <algorithm>

namespace blkclone {

void RateLimiter::SetRate(uint64_t bytes_per_second) {
  internal::MutexLock lock(mu_);
  rate_ = bytes_per_second;
  tokens_ = std::min(tokens_, 0.0);  // a new rate starts from an empty bucket
  last_ = Clock::now();
}

uint64_t RateLimiter::rate() const {
  internal::MutexLock lock(mu_);
  return rate_;
}

uint64_t RateLimiter::WindowBytes() const {
  internal::MutexLock lock(mu_);
  return rate_ * kWindow.count() / 1000;
}

RateLimiter::Clock::duration RateLimiter::Reserve(uint64_t bytes, Clock::time_point now) {
  internal::MutexLock lock(mu_);
  if (rate_ == 0) return Clock::duration::zero();
  const double depth = static_cast<double>(rate_) * kWindow.count() / 1000;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  if (elapsed > 0) {
    tokens_ = std::min(depth, tokens_ + elapsed * static_cast<double>(rate_));
    last_ = now;
  }
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(-tokens_ / static_cast<double>(rate_)));
}

}  // namespace blkclone

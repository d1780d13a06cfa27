// PacedCopier: a Copier that holds background copies to a RateLimiter's rate.
//
// Jobs marked `background` are cut into pieces of at most one rate window
// (so a 1 GiB region at 10 MB/s moves in 1 MB steps, not in one lump; without
// a limit, one piece) and each piece starts when the limiter allows; other
// jobs (a user's write waits on them) go straight to the inner copier. Changing the limiter's rate takes
// effect from the next piece.
//
//   blkclone::RateLimiter limiter(100 << 20);
//   blkclone::BufferedCopier base(source, dest);
//   blkclone::PacedCopier copier(base, limiter);
//   auto clone = Clone<Src, Dst, decltype(copier)>::Create(source, dest, copier, meta, {});
#pragma once

#include <algorithm>
#include <atomic>
#include <queue>
#include <thread>
#include <vector>

#include "blkclone/copier.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/object_pool.hpp"
#include "blkclone/rate_limiter.hpp"

namespace blkclone {

template <Copier Inner>
class PacedCopier {
 public:
  // Pieces are multiples of this (devices' block sizes divide it).
  static constexpr uint64_t kPieceAlignment = 4096;

  PacedCopier(Inner& inner, RateLimiter& limiter) : inner_(inner), limiter_(limiter) {
    timer_ = std::thread([this] { TimerLoop(); });
  }
  // Starts what waits at once and returns when every job has completed.
  ~PacedCopier() {
    {
      internal::MutexLock lock(mu_);
      stopping_ = true;
      cv_.SignalAll();
    }
    timer_.join();
    internal::MutexLock lock(mu_);
    cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; });
  }
  PacedCopier(const PacedCopier&) = delete;
  PacedCopier& operator=(const PacedCopier&) = delete;

  // Bytes of background copies done so far, counted piece by piece (so at
  // least every rate window while a limit holds).
  uint64_t background_bytes_copied() const { return copied_.load(std::memory_order_relaxed); }

  void Copy(CopyJob& job) noexcept {
    if (!job.background) return inner_.Copy(job);
    Paced* paced = pool_.Get();
    paced->owner = this;
    paced->job = &job;
    paced->done = 0;
    {
      internal::MutexLock lock(mu_);
      ++active_;
    }
    Next(*paced);
  }

 private:
  struct Paced {
    PacedCopier* owner;
    CopyJob* job;
    uint64_t done;  // bytes of the job copied
    CopyJob piece;  // the part in the inner copier's hands
  };
  struct Due {
    RateLimiter::Clock::time_point at;
    Paced* paced;
    bool operator>(const Due& other) const { return at > other.at; }
  };

  // Reserves the next piece and starts it now or when the limiter allows.
  void Next(Paced& paced) {
    const uint64_t left = paced.job->length - paced.done;
    const uint64_t window = limiter_.WindowBytes() / kPieceAlignment;
    // Unlimited: the rest in one piece.
    const uint64_t length = limiter_.rate() == 0 ? left
                                                 : std::min(std::max(window, uint64_t{1}) *
                                                                kPieceAlignment,
                                                            left);
    paced.piece.offset = paced.job->offset + paced.done;
    paced.piece.length = length;
    paced.piece.background = true;
    paced.piece.context = &paced;
    paced.piece.on_complete = &OnPieceDone;
    const auto now = RateLimiter::Clock::now();
    const auto wait = limiter_.Reserve(length, now);
    if (wait > RateLimiter::Clock::duration::zero()) {
      internal::MutexLock lock(mu_);
      if (!stopping_) {  // once stopping, nothing waits
        due_.push({now + wait, &paced});
        cv_.SignalAll();
        return;
      }
    }
    inner_.Copy(paced.piece);
  }

  static void OnPieceDone(CopyJob& piece, absl::Status status) {
    Paced& paced = *static_cast<Paced*>(piece.context);
    PacedCopier& self = *paced.owner;
    paced.done += piece.length;
    if (status.ok()) self.copied_.fetch_add(piece.length, std::memory_order_relaxed);
    if (status.ok() && paced.done < paced.job->length) return self.Next(paced);
    CopyJob& job = *paced.job;
    self.pool_.Put(&paced);
    job.Complete(std::move(status));
    internal::MutexLock lock(self.mu_);
    if (--self.active_ == 0) self.cv_.SignalAll();
  }

  // Starts pieces when they fall due (all at once when stopping).
  void TimerLoop() {
    internal::MutexLock lock(mu_);
    for (;;) {
      if (due_.empty()) {
        if (stopping_) return;
        cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !due_.empty();
        });
        continue;
      }
      const Due next = due_.top();
      if (!stopping_ && next.at > RateLimiter::Clock::now()) {
        cv_.WaitFor(mu_, next.at - RateLimiter::Clock::now(),
                    [this, &next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                      return stopping_ || due_.top().at < next.at;
                    });
        continue;
      }
      due_.pop();
      mu_.Unlock();
      inner_.Copy(next.paced->piece);
      mu_.Lock();
    }
  }

  Inner& inner_;
  RateLimiter& limiter_;
  internal::ObjectPool<Paced> pool_;
  internal::Mutex mu_;
  internal::CondVar cv_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_ ABSL_GUARDED_BY(mu_);
  uint64_t active_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> copied_{0};
  std::thread timer_;
};

}  // namespace blkclone

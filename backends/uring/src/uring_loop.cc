// UringLoop: the submit / wait / reap cycle and the eventfd wake-up.
#include "blkclone/internal/uring_loop.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <utility>

namespace blkclone::internal {
namespace {

// user_data of the eventfd read; derived classes tag SQEs with pointers.
constexpr uint64_t kWakeTag = 1;
constexpr unsigned kReapBatch = 64;

}  // namespace

void UringLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void UringLoop::Stop() {
  if (!thread_.joinable()) return;
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  Wake();
  thread_.join();
}

bool UringLoop::TakeWakeUp() { return std::exchange(sleeping_, false); }

void UringLoop::Wake() {
  const uint64_t one = 1;
  while (::write(ring_.wake_fd(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void UringLoop::ReserveSqes(unsigned count) {
  while (io_uring_sq_space_left(ring_.get()) < count) SubmitAndWait(0);
}

io_uring_sqe* UringLoop::NextSqe() {
  io_uring_sqe* sqe;
  while ((sqe = io_uring_get_sqe(ring_.get())) == nullptr) SubmitAndWait(0);
  return sqe;
}

void UringLoop::Run() {
  ArmWake();
  for (;;) {
    {
      MutexLock lock(mu_);
      TakePosted();
      if (stopping_ && !Busy()) {
        exited_ = true;
        return;
      }
    }
    StartWork();
    bool wait;
    {
      // Sleep only if nothing arrived meanwhile; from here on posters wake us.
      MutexLock lock(mu_);
      wait = !HasPosted() && !(stopping_ && !Busy());
      sleeping_ = wait;
    }
    SubmitAndWait(wait ? 1 : 0);
    if (wait) {
      // Awake again: posters need not write to the eventfd until we sleep.
      MutexLock lock(mu_);
      sleeping_ = false;
    }
    Reap();
  }
}

void UringLoop::ArmWake() {
  io_uring_sqe* sqe = NextSqe();
  io_uring_prep_read(sqe, ring_.wake_index(), &wake_value_, sizeof wake_value_, 0);
  io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
  io_uring_sqe_set_data64(sqe, kWakeTag);
}

void UringLoop::SubmitAndWait(unsigned wait) {
  // Errors (EINTR from a signal, EAGAIN/EBUSY when the kernel is short of
  // memory or wants completions reaped first) leave the SQEs queued: the loop
  // reaps and submits them on its next turn.
  const int submitted = io_uring_submit_and_wait(ring_.get(), wait);
  if (submitted > 0) {
    batches_.fetch_add(1, std::memory_order_relaxed);
    sqes_.fetch_add(static_cast<uint64_t>(submitted), std::memory_order_relaxed);
  }
}

void UringLoop::Reap() {
  std::array<io_uring_cqe*, kReapBatch> cqes;
  for (;;) {
    const unsigned n = io_uring_peek_batch_cqe(ring_.get(), cqes.data(), kReapBatch);
    if (n == 0) return;
    // Copied out and released first: handlers prepare new SQEs and complete
    // user requests, whose callbacks may post more work.
    std::array<std::pair<uint64_t, int32_t>, kReapBatch> done;
    for (unsigned i = 0; i < n; ++i) done[i] = {io_uring_cqe_get_data64(cqes[i]), cqes[i]->res};
    io_uring_cq_advance(ring_.get(), n);
    for (unsigned i = 0; i < n; ++i) {
      if (done[i].first == kWakeTag) {
        ArmWake();
      } else {
        OnCompletion(done[i].first, done[i].second);
      }
    }
  }
}

}  // namespace blkclone::internal

// UringLoop: one thread that owns a Ring. Other threads post work (requests,
// copy jobs) to a queue; the thread takes everything posted since its last
// turn, prepares SQEs for as much as its capacity allows, submits them all
// with one io_uring_enter, and dispatches the completions. When nothing is
// left to submit it sleeps in io_uring_enter; an eventfd read kept armed on the
// ring wakes it, so posting costs a write(2) only while the thread sleeps.
//
// A derived class owns the posted queue (guarded by mu_) and its in-flight
// state (touched only by the loop thread), implements the hooks, calls Start()
// at the end of its constructor and Stop() at the start of its destructor:
//
//   bool MyLoop::Post(Item& item) {
//     bool wake;
//     {
//       internal::MutexLock lock(mu_);
//       if (exited()) return false;
//       posted_.push_back(item);
//       wake = TakeWakeUp();
//     }
//     if (wake) Wake();
//     return true;
//   }
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/uring_ring.hpp"

namespace blkclone::internal {

class UringLoop {
 public:
  UringLoop(const UringLoop&) = delete;
  UringLoop& operator=(const UringLoop&) = delete;

  // io_uring_enter calls that submitted something, and the SQEs they submitted.
  uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }
  uint64_t sqes() const { return sqes_.load(std::memory_order_relaxed); }

 protected:
  explicit UringLoop(Ring ring) : ring_(std::move(ring)) {}
  // The derived destructor must have called Stop().
  virtual ~UringLoop() = default;

  // Starts the loop thread.
  void Start();
  // Lets the thread finish everything posted so far, then joins it; posting
  // fails afterwards.
  void Stop();

  // With mu_ held after posting: true if the caller must Wake() the thread
  // once it has unlocked.
  bool TakeWakeUp() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();
  // True once the thread has finished; posted work would never run.
  bool exited() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exited_; }

  // Loop thread: makes room for `count` SQEs in the batch being prepared. A
  // chain linked with IOSQE_IO_LINK must go in one submission: the kernel
  // ends a link at the end of a batch, and the rest would run unordered.
  void ReserveSqes(unsigned count);
  // Loop thread: the next free SQE, submitting the full queue if need be.
  io_uring_sqe* NextSqe();

  // Loop-thread hooks. Moves posted work to the thread's own lists.
  virtual void TakePosted() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  virtual bool HasPosted() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Prepares SQEs for taken work while capacity lasts.
  virtual void StartWork() = 0;
  // True while taken work is unfinished.
  virtual bool Busy() const = 0;
  // One CQE of the derived class's SQEs.
  virtual void OnCompletion(uint64_t user_data, int32_t result) = 0;

  Mutex mu_;

 private:
  void Run();
  void ArmWake();
  void SubmitAndWait(unsigned wait);
  void Reap();

  Ring ring_;
  uint64_t wake_value_ = 0;  // the eventfd read's target; loop thread only
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> sqes_{0};
  std::thread thread_;
};

}  // namespace blkclone::internal

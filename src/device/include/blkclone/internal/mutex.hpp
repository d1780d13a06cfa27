// A std::mutex that clang's thread-safety analysis understands.
//
// std::mutex carries no capability annotations, and absl::Mutex from a
// distribution package is invisible to ThreadSanitizer (its internals are not
// instrumented), so blkclone wraps std::mutex and annotates the wrapper:
//
//   internal::Mutex mu_;
//   int count_ ABSL_GUARDED_BY(mu_);
//   void Bump() { internal::MutexLock lock(mu_); ++count_; }
#pragma once

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace blkclone::internal {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// Condition variable for Mutex; Wait re-checks `done` under the lock.
class CondVar {
 public:
  template <class Predicate>
  void Wait(Mutex& mu, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();
  }
  // Returns false on timeout with `done` still false.
  template <class Predicate, class Duration>
  bool WaitFor(Mutex& mu, Duration timeout, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    bool result = cv_.wait_for(lock, timeout, done);
    lock.release();
    return result;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace blkclone::internal

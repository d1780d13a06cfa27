// Waits in tests that end: each has a deadline that fails the test instead of
// hanging it.
//
//   ASSERT_TRUE(WaitUntil([&] { return copier.jobs() > 0; }));
//   AwaitOrAbort(cv, mu, [&] { return done; }, "the write's completion");
//   BoundedThread closer([&] { EXPECT_TRUE(clone->Close().ok()); });
//   closer.Join();
//
// Where what is waited for may still use the test's memory (a request in
// flight, a running thread), a missed deadline aborts the process with a
// message instead of returning: a test binary that aborts fails under ctest.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "blkclone/internal/mutex.hpp"

namespace blkclone::testing {

// Long enough for a loaded 2-core machine under ThreadSanitizer: a wait that
// passes it is a hang.
inline constexpr std::chrono::seconds kWaitDeadline{30};

// Polls `done` every millisecond until it holds or `deadline` passes; returns
// whether it holds, for ASSERT_TRUE. `done` returns a plain bool: a proxy such
// as std::vector<bool>::reference would outlive the vector it points into.
template <class Predicate>
[[nodiscard]] bool WaitUntil(Predicate done, std::chrono::milliseconds deadline = kWaitDeadline) {
  static_assert(std::is_same_v<std::invoke_result_t<Predicate&>, bool>,
                "WaitUntil's predicate must return bool");
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

[[noreturn]] inline void AbortAfterDeadline(const char* what) {
  std::fprintf(stderr, "FAIL: waited %lld s for %s; aborting instead of hanging\n",
               static_cast<long long>(kWaitDeadline.count()), what);
  std::fflush(stderr);
  std::abort();
}

// Waits on `cv` with `mu` held until `done` holds; aborts past the deadline.
template <class Predicate>
void AwaitOrAbort(internal::CondVar& cv, internal::Mutex& mu, Predicate done, const char* what)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  if (!cv.WaitFor(mu, kWaitDeadline, std::move(done))) AbortAfterDeadline(what);
}

// The value of `future`; aborts past the deadline.
template <class T>
T AwaitOrAbort(std::future<T>& future, const char* what) {
  if (future.wait_for(kWaitDeadline) != std::future_status::ready) AbortAfterDeadline(what);
  return future.get();
}

// A thread running code that may block: Join() (or the destructor) waits for
// it with the deadline and aborts past it instead of hanging in join().
class BoundedThread {
 public:
  template <class Body>
  explicit BoundedThread(Body body)
      : thread_([this, body = std::move(body)]() mutable {
          {
            internal::MutexLock lock(mu_);
            tid_ = ::gettid();
            cv_.SignalAll();
          }
          body();
          internal::MutexLock lock(mu_);
          finished_ = true;
          cv_.SignalAll();
        }) {}
  ~BoundedThread() {
    if (thread_.joinable()) Join();
  }
  BoundedThread(const BoundedThread&) = delete;
  BoundedThread& operator=(const BoundedThread&) = delete;

  void Join() {
    {
      internal::MutexLock lock(mu_);
      AwaitOrAbort(cv_, mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; },
                   "a thread to finish");
    }
    thread_.join();
  }
  bool finished() {
    internal::MutexLock lock(mu_);
    return finished_;
  }
  // Its kernel thread id, once it has started.
  pid_t tid() {
    internal::MutexLock lock(mu_);
    AwaitOrAbort(cv_, mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return tid_ != 0; },
                 "a thread to start");
    return tid_;
  }
  // Whether it is asleep in the kernel (state S in /proc: waiting on a lock, a
  // condition or I/O) rather than running or runnable.
  bool Sleeping() {
    std::ifstream stat("/proc/self/task/" + std::to_string(tid()) + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t end_of_name = line.rfind(')');
    return end_of_name != std::string::npos && line.size() > end_of_name + 2 &&
           line[end_of_name + 2] == 'S';
  }

 private:
  internal::Mutex mu_;
  internal::CondVar cv_;
  pid_t tid_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: it starts once the fields above exist
};

}  // namespace blkclone::testing

// WorkerPool: threads that take items from an intrusive FIFO and run a
// function on each, for backends whose system calls block (pread, fdatasync,
// copy_file_range). Pushing allocates nothing.
//
//   internal::WorkerPool<Request, &Request::hook> pool(4, [](Request& r) { ... });
//   pool.Push(request);
#pragma once

#include <functional>
#include <thread>
#include <vector>

#include "blkclone/internal/mutex.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone::internal {

template <class Item, auto kHook>
class WorkerPool {
 public:
  WorkerPool(int threads, std::function<void(Item&)> work) : work_(std::move(work)) {
    for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this] { Loop(); });
  }
  // Runs every item already pushed, then stops the threads.
  ~WorkerPool() {
    {
      MutexLock lock(mu_);
      stopping_ = true;
      cv_.SignalAll();
    }
    for (std::thread& thread : threads_) thread.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Push(Item& item) {
    MutexLock lock(mu_);
    queue_.push_back(item);
    cv_.Signal();  // one item needs one worker; waking all costs a context switch each
  }

 private:
  using Hook = std::remove_reference_t<decltype(std::declval<Item&>().*kHook)>;
  using Queue = boost::intrusive::list<Item, boost::intrusive::member_hook<Item, Hook, kHook>>;

  void Loop() {
    for (;;) {
      Item* item;
      {
        MutexLock lock(mu_);
        cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        });
        if (queue_.empty()) return;  // stopping, and every item was taken
        item = &queue_.front();
        queue_.pop_front();
      }
      work_(*item);
    }
  }

  const std::function<void(Item&)> work_;
  Mutex mu_;
  CondVar cv_;
  Queue queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace blkclone::internal

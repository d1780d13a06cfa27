// RequestBatch: many requests submitted without waiting, then awaited
// together, with each request's completions counted, for tests that keep a
// device busy (concurrency, shutdown with requests in flight).
//
//   RequestBatch batch;
//   for (...) batch.Add(Request::Write(offset, data));
//   batch.SubmitAll(device);
//   batch.Wait();
//   EXPECT_TRUE(batch.AllSucceededOnce());
#pragma once

#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "bounded_wait.hpp"

namespace blkclone::testing {

class RequestBatch {
 public:
  // Adds `request` (its completion is replaced); the reference stays valid.
  Request& Add(Request request) {
    Entry& entry = entries_.emplace_back();
    entry.batch = this;
    entry.request = request;
    entry.request.context = &entry;
    entry.request.on_complete = &OnComplete;
    return entry.request;
  }
  size_t size() const { return entries_.size(); }

  // Submits every request from the calling thread, without waiting.
  template <BlockDevice D>
  void SubmitAll(D& device) {
    for (Entry& entry : entries_) device.Submit(entry.request);
  }

  // Returns once every request has completed at least once (aborts past the
  // deadline: the requests still use the batch).
  void Wait() {
    internal::MutexLock lock(mu_);
    AwaitOrAbort(
        done_cv_, mu_,
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completed_ >= entries_.size(); },
        "every request of a batch to complete");
  }

  // Empty if every request completed exactly once with OK, else what went wrong.
  std::string Problems() {
    internal::MutexLock lock(mu_);
    std::string problems;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& entry = entries_[i];
      if (entry.completions != 1 || !entry.status.ok())
        absl::StrAppend(&problems, "request ", i, ": ", entry.completions, " completions, ",
                        entry.status.ToString(), "\n");
    }
    return problems;
  }

 private:
  struct Entry {
    RequestBatch* batch = nullptr;
    Request request;
    int completions = 0;  // guarded by batch->mu_
    absl::Status status;  // guarded by batch->mu_
  };

  static void OnComplete(Request& request, absl::Status status) {
    Entry& entry = *static_cast<Entry*>(request.context);
    RequestBatch& batch = *entry.batch;
    internal::MutexLock lock(batch.mu_);
    ++entry.completions;
    if (entry.status.ok()) entry.status = std::move(status);
    ++batch.completed_;
    batch.done_cv_.SignalAll();
  }

  std::deque<Entry> entries_;
  internal::Mutex mu_;
  internal::CondVar done_cv_;
  size_t completed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blkclone::testing

// Fanning one operation out into parts and gathering their outcome.
//
// An operation of the FUSE export becomes several device requests (a large
// read cut at the transfer limit; a zeroing split into partial edges and whole
// blocks). Join counts the parts down and reports the first error once all are
// done; SubmitAll submits a set of requests as one such operation.
//
//   Join* join = Join::Create(2, std::move(done));
//   StartA([join](absl::Status s) { join->Arrive(std::move(s)); });
//   StartB([join](absl::Status s) { join->Arrive(std::move(s)); });
#pragma once

#include <atomic>
#include <cstddef>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"

namespace blkclone::internal {

// How an asynchronous operation reports its outcome, exactly once.
using Done = absl::AnyInvocable<void(absl::Status) &&>;

class Join {
 public:
  // A join expecting `parts` arrivals (at least one); it frees itself after the last.
  static Join* Create(size_t parts, Done done) { return new Join(parts, std::move(done)); }

  // Records one part's outcome; the last arrival runs `done` with the first error.
  void Arrive(absl::Status status);

 private:
  Join(size_t parts, Done done) : pending_(parts), done_(std::move(done)) {}

  std::atomic<size_t> pending_;
  Done done_;
  Mutex mu_;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
};

// Submits every request at once (their completions and contexts are replaced)
// and runs `done` with the first error after the last has completed. The
// requests are kept alive until then; their buffers are the caller's to keep.
void SubmitAll(AnyBlockDevice& device, std::vector<Request> requests, Done done);

}  // namespace blkclone::internal

// The Copier concept: copies byte ranges from a source device to a destination
// device asynchronously (the role of the kernel's kcopyd for dm-clone).
//
// A Copier C is bound to one source and one destination when it is made and
// provides `void Copy(CopyJob&) noexcept`. Rules:
//   1. The job (owned by the caller) stays alive until its completion runs,
//      exactly once, inside Copy or on any thread of the copier or devices.
//   2. On success the destination range holds what the source range held when
//      it was read; the destination data is not necessarily durable (the caller
//      flushes). On error the destination range may be partly written.
//   3. A copier bounds its own concurrency and queues jobs beyond it; Copy never
//      blocks. Copy may be called from many threads at once.
//   4. Destroying a copier completes every job already started or queued.
//
//   blkclone::BufferedCopier copier(source, dest, {.max_in_flight = 4});
//   job.offset = 0; job.length = 1 << 20; job.on_complete = Done;
//   copier.Copy(job);
#pragma once

#include <concepts>
#include <cstdint>

#include "absl/status/status.h"
#include "boost/intrusive/list_hook.hpp"

namespace blkclone {

struct CopyJob;
using CopyCompletionFn = void (*)(CopyJob& job, absl::Status status);

struct CopyJob {
  uint64_t offset = 0;  // same offset on both devices
  uint64_t length = 0;
  CopyCompletionFn on_complete = nullptr;
  void* context = nullptr;  // free for the submitter
  // Background work, which a rate limit may slow down; a user waits on the rest.
  bool background = false;
  // Free for the copier while the job is in its hands.
  boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>
      hook;

  void Complete(absl::Status status) { on_complete(*this, std::move(status)); }
};

template <class C>
concept Copier = requires(C& copier, CopyJob& job) {
  { copier.Copy(job) } noexcept -> std::same_as<void>;
};

}  // namespace blkclone

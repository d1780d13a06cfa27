// ReadOnlyGuard: proves that code never modifies a device, e.g. that a clone
// never writes, discards or flushes its source.
//
// Reads and block-status questions pass through. Anything else (write, discard, write-zeroes, flush, or a
// request carrying kFua or kPreflush) is a violation: the guard reports it to
// the callback, counts it and fails the request with kFailedPrecondition without
// touching the inner device. info() is the inner device's, unchanged: the code
// under test must behave as on the real source, not be steered away from writes.
//
//   blkclone::ReadOnlyGuard source(*memory_device, [](const blkclone::Request& r) {
//     ADD_FAILURE() << "the source was sent a " << blkclone::OpName(r.op);
//   });
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/block_device.hpp"

namespace blkclone {

template <BlockDevice Inner>
class ReadOnlyGuard {
 public:
  // May run on several submitting threads at once.
  using ViolationFn = std::function<void(const Request&)>;

  ReadOnlyGuard(Inner& inner, ViolationFn on_violation)
      : inner_(inner), on_violation_(std::move(on_violation)) {}

  const DeviceInfo& info() const { return inner_.info(); }
  void Submit(Request& request) noexcept {
    if ((request.op == Op::kRead || request.op == Op::kBlockStatus) && request.flags == kNoFlags) {
      inner_.Submit(request);
      return;
    }
    violations_.fetch_add(1, std::memory_order_relaxed);
    on_violation_(request);
    request.Complete(absl::FailedPreconditionError(
        absl::StrCat("read-only guard: ", OpName(request.op), " at offset ", request.offset,
                     " length ", request.length, " flags ", static_cast<int>(request.flags))));
  }

  // Requests refused so far.
  uint64_t violations() const { return violations_.load(std::memory_order_relaxed); }

 private:
  Inner& inner_;
  const ViolationFn on_violation_;
  std::atomic<uint64_t> violations_{0};
};

static_assert(BlockDevice<ReadOnlyGuard<AnyBlockDevice>>);

}  // namespace blkclone

// What the test devices that wrap another BlockDevice share: per-op tallies, and
// forwarding a request so that the wrapper sees its completion.
//
//   blkclone::PerOp<uint64_t> submitted;
//   ++submitted[request.op];
//   blkclone::internal::ForwardCopy(inner, request, [](blkclone::Request& r, absl::Status s) {
//     // look at the outcome, then hand it on
//     r.Complete(std::move(s));
//   });
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "blkclone/block_device.hpp"

namespace blkclone {

// Op's enumerators are dense from kRead to kBlockStatus.
inline constexpr size_t kOpCount = static_cast<size_t>(Op::kBlockStatus) + 1;

// One T per Op, indexed by the op.
template <class T>
struct PerOp {
  std::array<T, kOpCount> values{};

  T& operator[](Op op) { return values[static_cast<size_t>(op)]; }
  const T& operator[](Op op) const { return values[static_cast<size_t>(op)]; }
};

namespace internal {

// Submits a copy of `request` to `inner`; once `inner` completes the copy, calls
// `done(request, status)`, which must complete `request`. Working on a copy leaves
// the submitter's completion, context and hook alone while `inner` holds the request.
// `done` may run inside this call: hold no lock across it that `done` takes.
template <BlockDevice Inner, std::invocable<Request&, absl::Status> Done>
void ForwardCopy(Inner& inner, Request& request, Done done) noexcept {
  struct Forwarded {
    Request copy;
    Request* original;
    Done done;
  };
  auto* forwarded = new Forwarded{
      Request::Make(request.op, request.flags, request.offset, request.length, request.data),
      &request, std::move(done)};
  forwarded->copy.extents = request.extents;
  forwarded->copy.context = forwarded;
  forwarded->copy.on_complete = [](Request& copy, absl::Status status) {
    std::unique_ptr<Forwarded> owned(static_cast<Forwarded*>(copy.context));
    owned->done(*owned->original, std::move(status));
  };
  inner.Submit(forwarded->copy);
}

}  // namespace internal
}  // namespace blkclone

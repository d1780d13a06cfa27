// SourceAllocation: where a clone's source holds data and where it has holes,
// asked of the source (kBlockStatus) one window at a time and kept in bounded
// memory. The source never changes while it is cloned, so answers stay true.
//
// Lookups never wait: a window not known yet is asked for in the background
// and reported unknown meanwhile; WaitUntilKnown blocks until it is known.
// Without a way to ask (the source lacks caps.block_status), or once the
// source failed to answer, everything is data: the clone then copies it all.
//
//   SourceAllocation allocation(size, 4096, 64 << 10,
//                               [&](Request& r) { source.Submit(r); }, on_failure, {});
//   allocation.WaitUntilKnown(0);
//   std::optional<uint64_t> hole_end = allocation.HoleEnd(0);  // bytes from 0 that read as zeroes
//
// Threading: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/request.hpp"

namespace blkclone {

struct SourceAllocationOptions {
  uint64_t window = 256 << 20;          // bytes per question to the source
  size_t max_windows = 64;              // answers kept (least recently used go)
  size_t max_extents_per_window = 4096;  // beyond it holes shrink to whole `coarse` units
};

class SourceAllocation {
 public:
  // Sends a kBlockStatus request to the source; its completion may run inside.
  using SubmitFn = std::function<void(Request&)>;
  // Told once, when the source fails to describe itself (then all is data).
  using FailureFn = std::function<void(const absl::Status&)>;

  // `size`: the source's; answers come in whole `block`s, and in whole
  // `coarse` units (a multiple of `block`) for windows with too many extents.
  // A null `submit` means the source cannot tell: everything is data.
  SourceAllocation(uint64_t size, uint64_t block, uint64_t coarse, SubmitFn submit,
                   FailureFn on_failure, const SourceAllocationOptions& options);
  // Waits for the questions in flight.
  ~SourceAllocation();
  SourceAllocation(const SourceAllocation&) = delete;
  SourceAllocation& operator=(const SourceAllocation&) = delete;

  // False when everything is data for good (no way to ask, or it failed).
  bool enabled() const;
  // The window size, a multiple of `coarse`.
  uint64_t window() const { return window_; }

  // The extents of [offset, offset + length), which must lie in one window,
  // into `out`; false (and the window asked for) while unknown.
  bool Lookup(uint64_t offset, uint64_t length, std::vector<Extent>& out);
  // Where the hole starting at `offset` ends (at most the window's end):
  // `offset` itself for data, nothing while unknown (the window asked for).
  std::optional<uint64_t> HoleEnd(uint64_t offset);
  // Blocks until the window holding `offset` is known (or all is data).
  void WaitUntilKnown(uint64_t offset);

 private:
  struct Window;

  // The window holding `offset` if known, else nullptr having asked for it;
  // `to_ask` receives a window to submit once the lock is released.
  Window* FindLocked(uint64_t offset, Window*& to_ask) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Ask(Window& window);
  static void OnAnswer(Request& request, absl::Status status);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t size_;
  const uint64_t block_;
  const uint64_t coarse_;
  const uint64_t window_;
  const SourceAllocationOptions options_;
  const SubmitFn submit_;
  const FailureFn on_failure_;
  mutable internal::Mutex mu_;
  internal::CondVar answered_cv_;
  bool enabled_ ABSL_GUARDED_BY(mu_);
  uint64_t uses_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t asking_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Window>> windows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

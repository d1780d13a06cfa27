// Blocking helpers over any BlockDevice, for tools, tests and start-up code.
// Each submits one request and waits for its completion; never call them from
// a device's completion thread.
//
//   std::vector<std::byte> block(4096);
//   BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(device, 0, block));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(device, 4096, block, blkclone::kFua));
#pragma once

#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"

namespace blkclone {

// Submits `request` (its on_complete and context are overwritten) and waits.
template <BlockDevice D>
[[nodiscard]] absl::Status SubmitAndWait(D& device, Request request) {
  struct Waiter {
    internal::Mutex mu;
    internal::CondVar done_cv;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  } waiter;
  request.context = &waiter;
  request.on_complete = [](Request& r, absl::Status status) {
    auto* w = static_cast<Waiter*>(r.context);
    internal::MutexLock lock(w->mu);
    w->status = std::move(status);
    w->done = true;
    w->done_cv.SignalAll();
  };
  device.Submit(request);
  internal::MutexLock lock(waiter.mu);
  waiter.done_cv.Wait(waiter.mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiter.mu) {
    return waiter.done;
  });
  return waiter.status;
}

template <BlockDevice D>
[[nodiscard]] absl::Status ReadAt(D& device, uint64_t offset, std::span<std::byte> buffer) {
  return SubmitAndWait(device, Request::Read(offset, buffer));
}

template <BlockDevice D>
[[nodiscard]] absl::Status WriteAt(D& device, uint64_t offset, std::span<const std::byte> buffer,
                                   uint8_t flags = kNoFlags) {
  return SubmitAndWait(device, Request::Write(offset, buffer, flags));
}

template <BlockDevice D>
[[nodiscard]] absl::Status Flush(D& device) {
  return SubmitAndWait(device, Request::Flush());
}

template <BlockDevice D>
[[nodiscard]] absl::Status Discard(D& device, uint64_t offset, uint64_t length,
                                   uint8_t flags = kNoFlags) {
  return SubmitAndWait(device, Request::Discard(offset, length, flags));
}

template <BlockDevice D>
[[nodiscard]] absl::Status WriteZeroes(D& device, uint64_t offset, uint64_t length,
                                       uint8_t flags = kNoFlags) {
  return SubmitAndWait(device, Request::WriteZeroes(offset, length, flags));
}

// Where the range's data is: the device's kBlockStatus answer, or one data
// extent for a device without caps.block_status.
template <BlockDevice D>
[[nodiscard]] absl::StatusOr<std::vector<Extent>> DescribeAllocation(D& device, uint64_t offset,
                                                                     uint64_t length) {
  std::vector<Extent> extents;
  if (device.info().caps.block_status) {
    absl::Status status = SubmitAndWait(device, Request::BlockStatus(offset, length, &extents));
    if (!status.ok()) return status;
    return extents;
  }
  const uint64_t size = device.info().size;
  if (offset > size || length > size - offset)
    return absl::OutOfRangeError(absl::StrCat("block-status at offset ", offset, " length ",
                                              length, ": beyond the end of the device (", size,
                                              " bytes)"));
  if (length > 0) extents.push_back({.offset = offset, .length = length, .hole = false});
  return extents;
}

}  // namespace blkclone

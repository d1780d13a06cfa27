// The BlockDevice concept: the contract between every layer of blkclone.
//
// A BlockDevice D provides:
//   1. `const DeviceInfo& info() const`: size, alignment, capabilities; constant
//      for the device's lifetime.
//   2. `void Submit(Request&) noexcept`: starts a request; never blocks on I/O.
// Rules every model follows (the conformance suite in
// blkclone/testing/device_conformance.hpp checks them):
//   - Threading: Submit may be called from any number of threads at once. The
//     completion runs exactly once, either inside Submit (on the caller's
//     thread) or later on a thread of the device; callers therefore never hold
//     a lock across Submit that their completion takes.
//   - Validation: a request that breaks DeviceInfo's rules completes with the
//     error ValidateRequest gives and changes nothing.
//   - No short I/O: a request transfers all of its bytes or fails; devices
//     retry partial transfers themselves.
//   - Ordering: requests in flight at the same time have no order between them.
//   - Durability: a completed kFlush makes durable every write that completed
//     before the flush was submitted; a completed kFua write is durable; kPreflush
//     acts as a flush in front of the request.
//   - Lifetime: destroying a device completes (performs or fails) every request
//     already submitted before the destructor returns.
//
//   blkclone::MemoryDevice dev(...);
//   static_assert(blkclone::BlockDevice<blkclone::MemoryDevice>);
//   absl::Status s = blkclone::WriteAt(dev, 0, data);   // see sync_io.hpp
#pragma once

#include <concepts>

#include "blkclone/device_info.hpp"
#include "blkclone/request.hpp"

namespace blkclone {

template <class D>
concept DescribesDevice = requires(const D& device) {
  { device.info() } -> std::same_as<const DeviceInfo&>;
};

template <class D>
concept AcceptsRequests = requires(D& device, Request& request) {
  { device.Submit(request) } noexcept -> std::same_as<void>;
};

template <class D>
concept BlockDevice = DescribesDevice<D> && AcceptsRequests<D>;

}  // namespace blkclone

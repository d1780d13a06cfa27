// ZeroDevice: the smallest model of the BlockDevice concept, written against
// blkclone::device alone: 1 MiB that reads as zeroes and accepts writes.
#pragma once

#include <cstring>

#include "blkclone/block_device.hpp"

class ZeroDevice {
 public:
  const blkclone::DeviceInfo& info() const { return info_; }
  void Submit(blkclone::Request& request) noexcept {
    absl::Status status = blkclone::ValidateRequest(info_, request);
    if (status.ok() && request.op == blkclone::Op::kRead)
      std::memset(request.data, 0, request.length);
    request.Complete(std::move(status));
  }

 private:
  blkclone::DeviceInfo info_{.size = 1 << 20};
};
static_assert(blkclone::BlockDevice<ZeroDevice>);

// RoundTrip: writes a block at 8192 with FUA and reads it back; 0 on success.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "blkclone/sync_io.hpp"

template <class Device>
int RoundTrip(Device& device, std::byte pattern) {
  std::vector<std::byte> out(4096, pattern), in(4096);
  if (!blkclone::WriteAt(device, 8192, out, blkclone::kFua).ok()) return 1;
  if (!blkclone::ReadAt(device, 8192, in).ok()) return 1;
  return std::memcmp(in.data(), out.data(), in.size()) == 0 ? 0 : 1;
}

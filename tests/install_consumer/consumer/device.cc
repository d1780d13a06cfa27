// blkclone::device alone: a device of the consumer's own behind AnyBlockDevice,
// written and read through the sync helpers.
#include <cstdio>

#include "blkclone/any_block_device.hpp"
#include "round_trip.hpp"
#include "zero_device.hpp"

int main() {
  ZeroDevice zero;
  blkclone::AnyBlockDevice device = blkclone::AnyBlockDevice::Borrow(zero);
  std::vector<std::byte> block(4096, std::byte{1});
  if (!blkclone::ReadAt(device, 0, block).ok() || block[0] != std::byte{0}) return 1;
  if (!blkclone::WriteAt(device, 4096, block, blkclone::kFua).ok()) return 1;
  std::printf("consumer_device: a ZeroDevice through AnyBlockDevice\n");
  return 0;
}

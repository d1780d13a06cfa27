// blkclone::testing alone: a memory device, and the conformance suite's
// header (GoogleTest comes with the part).
#include <cstdio>

#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "round_trip.hpp"

int main() {
  auto device = blkclone::MemoryDevice::Create({.size = 1 << 20});
  if (!device.ok() || RoundTrip(**device, std::byte{0x5a}) != 0) return 1;
  std::printf("consumer_testing: a MemoryDevice\n");
  return 0;
}

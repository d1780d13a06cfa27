// blkclone::file alone: a block written and read back through FileDevice,
// behind AnyBlockDevice.
#include <cstdio>

#include "blkclone/any_block_device.hpp"
#include "blkclone/file_device.hpp"
#include "round_trip.hpp"
#include "scratch_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2 || !ScratchFile(argv[1])) return 2;
  auto file = blkclone::FileDevice::Open(argv[1], {});
  if (!file.ok()) return std::fprintf(stderr, "%s\n", file.status().ToString().c_str()), 1;
  blkclone::AnyBlockDevice device(std::move(*file));
  if (RoundTrip(device, std::byte{0x5a}) != 0) return 1;
  std::printf("consumer_file: wrote and read back 4096 bytes\n");
  return 0;
}

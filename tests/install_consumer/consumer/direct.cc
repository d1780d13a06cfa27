// blkclone::direct alone: opens a file with O_DIRECT where the file system
// allows it.
#include <cstdio>

#include "blkclone/direct_device.hpp"
#include "scratch_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2 || !ScratchFile(argv[1])) return 2;
  auto direct = blkclone::DirectDevice::Open(argv[1], {});
  if (!direct.ok()) {
    std::printf("consumer_direct: O_DIRECT refused here: %s\n", direct.status().ToString().c_str());
    return 0;
  }
  std::printf("consumer_direct: %llu bytes, blocks of %u\n",
              static_cast<unsigned long long>((*direct)->info().size),
              (*direct)->info().logical_block_size);
  return 0;
}

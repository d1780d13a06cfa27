// A program outside the project that uses the installed package: writes a
// block through the file backend and reads it back through AnyBlockDevice.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "blkclone/any_block_device.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/sync_io.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int fd = ::open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0600);
  if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) return 1;
  ::close(fd);
  auto file = blkclone::FileDevice::Open(argv[1], {});
  if (!file.ok()) return std::fprintf(stderr, "%s\n", file.status().ToString().c_str()), 1;
  blkclone::AnyBlockDevice device(std::move(*file));
  std::vector<std::byte> out(4096, std::byte{0x5a}), in(4096);
  if (!blkclone::WriteAt(device, 8192, out, blkclone::kFua).ok()) return 1;
  if (!blkclone::ReadAt(device, 8192, in).ok()) return 1;
  if (std::memcmp(in.data(), out.data(), in.size()) != 0) return 1;
  std::printf("consumer: wrote and read back 4096 bytes through the installed blkclone\n");
  return 0;
}

// A program outside the project that uses the installed package: writes a
// block through the file backend and reads it back through AnyBlockDevice,
// then does the same through the io_uring backend when it was installed.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "blkclone/any_block_device.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/sync_io.hpp"
#ifdef CONSUMER_WITH_URING
#include "blkclone/uring_device.hpp"
#endif

// Writes a block at 8192 and reads it back; 0 on success.
template <class Device>
int RoundTrip(Device& device, std::byte pattern) {
  std::vector<std::byte> out(4096, pattern), in(4096);
  if (!blkclone::WriteAt(device, 8192, out, blkclone::kFua).ok()) return 1;
  if (!blkclone::ReadAt(device, 8192, in).ok()) return 1;
  return std::memcmp(in.data(), out.data(), in.size()) == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int fd = ::open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0600);
  if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) return 1;
  ::close(fd);
  auto file = blkclone::FileDevice::Open(argv[1], {});
  if (!file.ok()) return std::fprintf(stderr, "%s\n", file.status().ToString().c_str()), 1;
  blkclone::AnyBlockDevice device(std::move(*file));
  if (RoundTrip(device, std::byte{0x5a}) != 0) return 1;
  std::printf("consumer: wrote and read back 4096 bytes through the installed blkclone\n");
#ifdef CONSUMER_WITH_URING
  auto uring = blkclone::UringDevice::Open(argv[1], {});
  if (uring.status().code() == absl::StatusCode::kUnimplemented ||
      uring.status().code() == absl::StatusCode::kPermissionDenied) {
    std::printf("consumer: io_uring unavailable here: %s\n", uring.status().ToString().c_str());
    return 0;
  }
  if (!uring.ok()) return std::fprintf(stderr, "%s\n", uring.status().ToString().c_str()), 1;
  if (RoundTrip(**uring, std::byte{0xa5}) != 0) return 1;
  std::printf("consumer: and through blkclone::uring\n");
#endif
  return 0;
}

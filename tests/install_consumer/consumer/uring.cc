// blkclone::uring alone: a block written and read back through UringDevice,
// where the kernel allows io_uring.
#include <cstdio>

#include "blkclone/uring_device.hpp"
#include "round_trip.hpp"
#include "scratch_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2 || !ScratchFile(argv[1])) return 2;
  auto uring = blkclone::UringDevice::Open(argv[1], {});
  if (uring.status().code() == absl::StatusCode::kUnimplemented ||
      uring.status().code() == absl::StatusCode::kPermissionDenied) {
    std::printf("consumer_uring: io_uring unavailable here: %s\n",
                uring.status().ToString().c_str());
    return 0;
  }
  if (!uring.ok()) return std::fprintf(stderr, "%s\n", uring.status().ToString().c_str()), 1;
  if (RoundTrip(**uring, std::byte{0xa5}) != 0) return 1;
  std::printf("consumer_uring: wrote and read back 4096 bytes\n");
  return 0;
}

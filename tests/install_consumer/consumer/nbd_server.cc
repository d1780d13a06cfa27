// blkclone::nbd_server alone: serves a device of the consumer's own on a Unix
// socket, then stops.
#include <cstdio>

#include "blkclone/nbd_server.hpp"
#include "zero_device.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ZeroDevice zero;
  blkclone::NbdServer server(blkclone::AnyBlockDevice::Borrow(zero),
                             {.listen = blkclone::NbdListenAddress::Unix(argv[1])});
  if (absl::Status s = server.Start(); !s.ok())
    return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
  server.Stop();
  std::printf("consumer_nbd_server: served %s\n", argv[1]);
  return 0;
}

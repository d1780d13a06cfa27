// blkclone::nbd alone: a connection to an NBD server that is not there fails
// with a status.
#include <cstdio>
#include <string>

#include "blkclone/nbd_device.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto nbd = blkclone::NbdDevice::Open(std::string("nbd+unix:///?socket=") + argv[1], {});
  if (nbd.ok()) return 1;
  std::printf("consumer_nbd: no server: %s\n", nbd.status().ToString().c_str());
  return 0;
}

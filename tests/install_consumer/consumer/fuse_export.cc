// blkclone::fuse_export alone: mounting on a directory that is not there fails
// with a status.
#include <cstdio>

#include "blkclone/fuse_export.hpp"
#include "zero_device.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  ZeroDevice zero;
  auto fuse = blkclone::FuseExport::Mount(blkclone::AnyBlockDevice::Borrow(zero), argv[1]);
  if (fuse.ok()) return 1;
  std::printf("consumer_fuse_export: no mount point: %s\n", fuse.status().ToString().c_str());
  return 0;
}

// blkclone::rbd alone: parses an image name (opening one needs a cluster).
#include <cstdio>

#include "blkclone/rbd_image_spec.hpp"

int main() {
  auto spec = blkclone::RbdImageSpec::Parse("pool/image");
  if (!spec.ok()) return std::fprintf(stderr, "%s\n", spec.status().ToString().c_str()), 1;
  std::printf("consumer_rbd: parsed pool/image\n");
  return 0;
}

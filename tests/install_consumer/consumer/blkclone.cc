// blkclone::blkclone (with blkclone::testing's memory devices): a clone with
// in-memory metadata, written through and hydrated on the way.
#include <cstdio>
#include <cstring>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "round_trip.hpp"

using blkclone::MemoryDevice;

int main() {
  auto source = MemoryDevice::Create({.size = 1 << 20});
  auto dest = MemoryDevice::Create({.size = 1 << 20});
  if (!source.ok() || !dest.ok()) return 1;
  std::vector<std::byte> pattern(1 << 20, std::byte{0x33});
  (*source)->Fill(0, pattern);
  auto geometry = blkclone::MakeCloneGeometry((*source)->info(), (*dest)->info(), 64 << 10);
  if (!geometry.ok()) return 1;
  blkclone::InMemoryMetadata metadata(*geometry);
  blkclone::BufferedCopier copier(**source, **dest);
  auto clone = blkclone::Clone<MemoryDevice, MemoryDevice, decltype(copier)>::Create(
      **source, **dest, copier, metadata, {});
  if (!clone.ok()) return std::fprintf(stderr, "%s\n", clone.status().ToString().c_str()), 1;
  if (RoundTrip(**clone, std::byte{0x5a}) != 0) return 1;
  // The rest of the written block's region came from the source.
  std::vector<std::byte> around(4096);
  if (!blkclone::ReadAt(**dest, 4096, around).ok() || around[0] != std::byte{0x33}) return 1;
  if (!(*clone)->Close().ok()) return 1;
  std::printf("consumer_blkclone: wrote through a Clone of memory devices\n");
  return 0;
}

// blkclone::registry with the engine: files opened by name, a clone run
// through the session API from create to finalize.
#include <cstdio>
#include <string>

#include "blkclone/clone_session.hpp"
#include "blkclone/device_registry.hpp"
#include "round_trip.hpp"
#include "scratch_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const std::string source = dir + ".src", dest = dir + ".dst", meta = dir + ".meta";
  for (const std::string& path : {source, dest, meta}) {
    if (!ScratchFile(path.c_str())) return 2;
  }
  auto open = [](const std::string& path, bool read_only) {
    return blkclone::OpenDeviceByName(path, {.read_only = read_only});
  };
  auto s = open(source, true), d = open(dest, false), m = open(meta, false);
  if (!s.ok() || !d.ok() || !m.ok()) return 1;
  auto session = blkclone::CloneSession::Create(
      {std::move(*s), std::move(*d), std::move(*m)}, 64 << 10,
      {.hydration = {.threshold = 4, .batch_size = 4}});
  if (!session.ok()) return std::fprintf(stderr, "%s\n", session.status().ToString().c_str()), 1;
  if (RoundTrip((*session)->clone(), std::byte{0x5a}) != 0) return 1;
  if (!(*session)->HydrateAll().ok() || !(*session)->Finalize().ok()) return 1;
  std::printf("consumer_registry: cloned files opened by name, finalized\n");
  return 0;
}

// Cost of the device layer itself: one 4 KiB synchronous write through the
// memory device, directly and behind AnyBlockDevice's virtual call.
#include <vector>

#include "benchmark/benchmark.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/memory_device.hpp"

namespace blkclone {
namespace {

template <class Device>
void WriteLoop(benchmark::State& state, Device& device) {
  std::vector<std::byte> block(4096, std::byte{1});
  const uint64_t blocks = device.info().size / block.size();
  uint64_t i = 0;
  for (auto _ : state) {
    if (!WriteAt(device, (i++ % blocks) * block.size(), block).ok()) state.SkipWithError("write");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * block.size()));
}

void BM_MemoryWrite4K(benchmark::State& state) {
  auto device = *MemoryDevice::Create({.size = 64 << 20});
  WriteLoop(state, *device);
}
BENCHMARK(BM_MemoryWrite4K);

void BM_AnyMemoryWrite4K(benchmark::State& state) {
  AnyBlockDevice device(*MemoryDevice::Create({.size = 64 << 20}));
  WriteLoop(state, device);
}
BENCHMARK(BM_AnyMemoryWrite4K);

}  // namespace
}  // namespace blkclone

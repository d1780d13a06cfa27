// Cost of a metadata commit against the number of regions it persists, on a
// memory device: it should grow with the regions changed, not the map size.
#include "benchmark/benchmark.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"

namespace blkclone {
namespace {

// state.range(0): regions marked per commit; state.range(1): log2 of the region count.
void BM_Commit(benchmark::State& state) {
  const uint64_t changed = static_cast<uint64_t>(state.range(0));
  const uint64_t regions = uint64_t{1} << state.range(1);
  const CloneGeometry geometry{.source_size = regions * 4096, .dest_size = regions * 4096,
                               .region_size = 4096, .region_count = regions};
  const uint64_t size = (PersistentMetadata::RequiredSize(geometry) + 4095) / 4096 * 4096;
  auto device = *MemoryDevice::Create({.size = size});
  auto metadata = *PersistentMetadata::Open(AnyBlockDevice::Borrow(*device), geometry,
                                            {.format_if_blank = true});
  uint64_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Spread the marks so each commit touches as many bitmap blocks as it can.
    const uint64_t stride = std::max<uint64_t>(regions / changed, 1);
    for (uint64_t k = 0; k < changed; ++k) metadata->MarkHydrated((next + k * stride) % regions, 1);
    ++next;
    state.ResumeTiming();
    metadata->Seal();
    if (!metadata->CommitSealed().ok()) state.SkipWithError("commit");
  }
}
BENCHMARK(BM_Commit)
    ->ArgNames({"changed", "log2_regions"})
    ->Args({1, 16})
    ->Args({1, 26})
    ->Args({64, 26})
    ->Args({4096, 26});

}  // namespace
}  // namespace blkclone

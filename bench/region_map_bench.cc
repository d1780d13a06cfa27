// RegionMap: the scans the hydrator makes and the sets every hydration makes.
#include <cstdint>

#include "benchmark/benchmark.h"
#include "blkclone/region_map.hpp"

namespace blkclone {
namespace {

// FindNextUnset on a map that is all hydrated but its last region: the summary
// levels must make this independent of the map size.
void BM_FindNextUnsetNearlyFull(benchmark::State& state) {
  const uint64_t regions = uint64_t{1} << state.range(0);
  RegionMap map(regions);
  map.SetRange(0, regions - 1);
  for (auto _ : state) benchmark::DoNotOptimize(map.FindNextUnset(0));
}
BENCHMARK(BM_FindNextUnsetNearlyFull)->Arg(16)->Arg(24)->Arg(30);

void BM_SetSequential(benchmark::State& state) {
  RegionMap map(uint64_t{1} << 24);
  uint64_t next = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(map.Set(next));
    next = (next + 1) & ((uint64_t{1} << 24) - 1);
  }
}
BENCHMARK(BM_SetSequential);

void BM_SetRange(benchmark::State& state) {
  const uint64_t count = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    RegionMap map(uint64_t{1} << 22);
    state.ResumeTiming();
    benchmark::DoNotOptimize(map.SetRange(7, count));
  }
}
BENCHMARK(BM_SetRange)->Arg(64)->Arg(4096)->Arg(1 << 20);

}  // namespace
}  // namespace blkclone

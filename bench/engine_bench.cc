// What the clone engine adds per request, over a device that does nothing:
// routing, splitting, pools and completion, for reads and writes of hydrated
// regions (the steady state) and reads of unhydrated ones.
#include <vector>

#include "benchmark/benchmark.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"

namespace blkclone {
namespace {

// Completes every request at once; reads leave the buffer as it is.
class NullDevice {
 public:
  explicit NullDevice(uint64_t size) : info_{.size = size, .caps = {.discard = true}} {}
  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept { request.Complete(ValidateRequest(info_, request)); }

 private:
  DeviceInfo info_;
};

constexpr uint64_t kSize = uint64_t{1} << 30;
constexpr uint64_t kRegion = 64 << 10;

void Direct(benchmark::State& state) {
  NullDevice device(kSize);
  std::vector<std::byte> block(4096);
  uint64_t i = 0;
  for (auto _ : state) {
    if (!ReadAt(device, (i++ % 1024) * kRegion, block).ok()) state.SkipWithError("read");
  }
}
BENCHMARK(Direct)->Name("BM_NullDeviceRead4K");

// state.range(0): 1 = regions hydrated (destination), 0 = not (source).
void ThroughClone(benchmark::State& state, Op op) {
  NullDevice source(kSize), dest(kSize);
  BufferedCopier copier(source, dest);
  InMemoryMetadata metadata(*MakeCloneGeometry(source.info(), dest.info(), kRegion));
  if (state.range(0) == 1) metadata.MarkHydrated(0, metadata.geometry().region_count);
  auto clone = *Clone<NullDevice, NullDevice, decltype(copier)>::Create(
      source, dest, copier, metadata, {.commit_interval = std::chrono::hours(1)});
  std::vector<std::byte> block(4096);
  uint64_t i = 0;
  for (auto _ : state) {
    const uint64_t offset = (i++ % 1024) * kRegion;
    absl::Status s = op == Op::kRead ? ReadAt(*clone, offset, block) : WriteAt(*clone, offset, block);
    if (!s.ok()) state.SkipWithError("request");
  }
  (void)clone->Close();
}

void BM_CloneRead4K(benchmark::State& state) { ThroughClone(state, Op::kRead); }
BENCHMARK(BM_CloneRead4K)->ArgName("hydrated")->Arg(0)->Arg(1);

void BM_CloneWrite4KHydrated(benchmark::State& state) { ThroughClone(state, Op::kWrite); }
BENCHMARK(BM_CloneWrite4KHydrated)->ArgName("hydrated")->Arg(1);

}  // namespace
}  // namespace blkclone

// Crash replay of a whole clone: persistent metadata and destination are
// recorded (one clock for both) while a random workload runs one request at a
// time, then every instant of the run is replayed as a power failure, with
// none, all, random and torn subsets of the writes that were not yet durable.
// CrashStateChecker checks each state: Check, read-write reopen without
// repair, every block as the contract allows (I1/I2: never the destination's
// stale content; I3: what a FLUSH or FUA made durable), then write, flush,
// crash again and check again.
// BLKCLONE_CRASH_WORKLOADS sets how many random workloads run (default 12,
// over 10,000 crash states; 6 in sanitizer builds, which sample instants);
// the count is printed.
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "crash_history.hpp"
#include "crash_state_checker.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using testing::BlockOracle;
using testing::kCrashBlock;
using testing::UserOp;
using Bytes = std::vector<std::byte>;
constexpr uint64_t kRegion = 8192;
constexpr uint64_t kRegions = 20;
constexpr uint64_t kSize = kRegions * kRegion - 2048;  // a short last region
constexpr uint64_t kBlocks = kSize / kCrashBlock;
constexpr int kOpsPerWorkload = 90;

class CloneCrashTest : public ::testing::Test {
 protected:
  using Guard = ReadOnlyGuard<MemoryDevice>;
  using Dest = RecordingDevice<MemoryDevice>;
  using RecordedClone = Clone<Guard, Dest, BufferedCopier<Guard, Dest>>;

  // Runs one random workload and replays every crash instant of it; returns
  // the number of crash states checked.
  uint64_t RunWorkload(uint64_t seed) {
    std::mt19937_64 rng(seed);
    const auto [meta_memory, dest_memory] = bench_.NewDevices(seed);
    const Bytes meta_before = meta_memory->Contents(), dest_before = dest_memory->Contents();
    RecordingClock clock;
    RecordingDevice<MemoryDevice> meta(*meta_memory, &clock);
    Dest dest(*dest_memory, &clock);
    std::vector<UserOp> ops;
    {
      auto metadata = *PersistentMetadata::Open(AnyBlockDevice::Borrow(meta), bench_.geometry,
                                                 {.format_if_blank = true});
      BufferedCopier<Guard, Dest> copier(bench_.source, dest, {.chunk_size = 4096});
      auto clone = *RecordedClone::Create(bench_.source, dest, copier, *metadata,
                                          {.commit_interval = std::chrono::milliseconds(1)});
      for (int i = 0; i < kOpsPerWorkload; ++i) ops.push_back(RunOne(*clone, rng, clock, i));
      EXPECT_TRUE(clone->Close().ok());
    }
    BlockOracle oracle(ops, bench_.source_data);
    std::string error;
    const uint64_t states =
        bench_.checker.CheckAll({{meta_before, meta.Log()}, {dest_before, dest.Log()}}, oracle,
                                testing::kReplayStride, rng, error);
    if (!error.empty()) ADD_FAILURE() << error << " of workload " << seed;
    return states;
  }

  static UserOp RunOne(RecordedClone& clone, std::mt19937_64& rng, RecordingClock& clock, int i) {
    UserOp op{.value = i};
    op.first_block = rng() % kBlocks;
    op.blocks = 1 + rng() % std::min<uint64_t>(kBlocks - op.first_block, 2 * kRegion / kCrashBlock);
    const uint64_t kind = rng() % 10;
    op.op = kind < 6   ? Op::kWrite
            : kind < 7 ? Op::kDiscard
            : kind < 8 ? Op::kWriteZeroes
                       : Op::kFlush;
    if (op.op != Op::kFlush && op.op != Op::kDiscard) {
      const uint64_t f = rng() % 8;
      op.flags = f == 0 ? kFua : f == 1 ? kPreflush : kNoFlags;
    }
    testing::SubmitStamped(clone, kRegion, clock, op);
    EXPECT_TRUE(op.ok) << OpName(op.op) << " failed";
    return op;
  }

  testing::CrashBench bench_{kSize, kRegion};
};

TEST_F(CloneCrashTest, EveryCrashStateOpensChecksAndKeepsWhatWasPromised) {
  const char* env = std::getenv("BLKCLONE_CRASH_WORKLOADS");
  const int workloads = env != nullptr ? std::atoi(env) : testing::kReplayStride > 1 ? 6 : 12;
  uint64_t states = 0;
  for (int w = 0; w < workloads && !HasFailure(); ++w) states += RunWorkload(1000 + w);
  std::cout << "crash states replayed: " << states << " (distinct: " << bench_.checker.distinct()
            << ") over " << workloads << " workloads\n";
  RecordProperty("crash_states", static_cast<int>(states));
  EXPECT_GT(states, 0u);
}

}  // namespace
}  // namespace blkclone

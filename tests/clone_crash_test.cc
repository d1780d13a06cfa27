// Crash replay of a whole clone: persistent metadata and destination are
// recorded (one clock for both) while a random workload runs one request at a
// time, then every instant of the run is replayed as a power failure, with
// none, all, random and torn subsets of the writes that were not yet durable.
// CrashStateChecker checks each state: Check, read-write reopen without
// repair, every block as the contract allows (I1/I2: never the destination's
// stale content; I3: what a FLUSH or FUA made durable), then write, flush,
// crash again and check again.
// BLKCLONE_CRASH_WORKLOADS sets how many random workloads run (default 12,
// over 10,000 crash states); the count is printed.
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
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::BlockOracle;
using testing::CrashStateChecker;
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

  void SetUp() override { source_memory_->Fill(0, source_data_); }

  // Runs one random workload and replays every crash instant of it; returns
  // the number of crash states checked.
  uint64_t RunWorkload(uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto dest_memory = *MemoryDevice::Create({.size = kSize});
    dest_memory->Fill(0, testing::RandomBytes(kSize, seed + 77));  // stale: a bug would show it
    auto meta_memory = *MemoryDevice::Create({.size = meta_size_});
    {
      auto formatted = PersistentMetadata::Open(AnyBlockDevice::Borrow(*meta_memory), geometry_);
      EXPECT_TRUE(formatted.ok()) << formatted.status();
    }
    const Bytes meta_before = meta_memory->Contents(), dest_before = dest_memory->Contents();
    RecordingClock clock;
    RecordingDevice<MemoryDevice> meta(*meta_memory, &clock);
    Dest dest(*dest_memory, &clock);
    std::vector<UserOp> ops;
    {
      auto metadata = *PersistentMetadata::Open(AnyBlockDevice::Borrow(meta), geometry_);
      BufferedCopier<Guard, Dest> copier(source_, dest, {.chunk_size = 4096});
      auto clone = *RecordedClone::Create(source_, dest, copier, *metadata,
                                          {.commit_interval = std::chrono::milliseconds(1)});
      for (int i = 0; i < kOpsPerWorkload; ++i) ops.push_back(RunOne(*clone, rng, clock, i));
      EXPECT_TRUE(clone->Close().ok());
    }
    BlockOracle oracle(ops, source_data_);
    std::string error;
    const uint64_t states =
        checker_.CheckAll({{meta_before, meta.Log()}, {dest_before, dest.Log()}}, oracle,
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
    const uint64_t offset = op.first_block * kCrashBlock, length = op.blocks * kCrashBlock;
    if (op.op == Op::kWriteZeroes) op.value = testing::kZeroValue;
    if (op.op == Op::kDiscard) testing::SetDiscardedBlocks(offset, length, kRegion, kSize, op);
    if (op.op == Op::kFlush) op.blocks = 0;
    testing::SubmitStamped(clone, offset, length, clock, op);
    EXPECT_TRUE(op.ok) << OpName(op.op) << " failed";
    return op;
  }

  const Bytes source_data_ = testing::RandomBytes(kSize, 1);
  std::unique_ptr<MemoryDevice> source_memory_ = *MemoryDevice::Create({.size = kSize});
  Guard source_{*source_memory_, [](const Request& r) {
                  ADD_FAILURE() << "the source received a " << OpName(r.op);
                }};
  const CloneGeometry geometry_ = *MakeCloneGeometry(
      DeviceInfo{.size = kSize, .caps = {}}, DeviceInfo{.size = kSize, .caps = {}}, kRegion);
  const uint64_t meta_size_ = (PersistentMetadata::RequiredSize(geometry_) + 4095) / 4096 * 4096;
  CrashStateChecker checker_{source_data_, geometry_};
};

TEST_F(CloneCrashTest, EveryCrashStateOpensChecksAndKeepsWhatWasPromised) {
  const char* env = std::getenv("BLKCLONE_CRASH_WORKLOADS");
  const int workloads = env != nullptr ? std::atoi(env) : 12;
  uint64_t states = 0;
  for (int w = 0; w < workloads && !HasFailure(); ++w) states += RunWorkload(1000 + w);
  std::cout << "crash states replayed: " << states << " (distinct: " << checker_.distinct()
            << ") over " << workloads << " workloads\n";
  RecordProperty("crash_states", static_cast<int>(states));
  EXPECT_GT(states, 0u);
}

}  // namespace
}  // namespace blkclone

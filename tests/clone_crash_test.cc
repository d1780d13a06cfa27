// Crash replay of a whole clone: persistent metadata and destination are
// recorded (one clock for both) while a random workload runs, then every
// instant of the run is replayed as a power failure, with none, all, random and
// torn subsets of the writes that were not yet durable. Each crash state must
// open without repair, pass Check, and read back as the contract says:
//   I1/I2: a region marked hydrated holds source data, user data, or (if
//          discarded) anything; never the destination's stale content;
//   I3:    a write acknowledged before a completed FLUSH, or with FUA, is read
//          back (or a later write to the same place).
// BLKCLONE_CRASH_WORKLOADS sets how many random workloads run (default 12,
// over 10,000 crash states); the count is printed.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/crash_replay.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using Bytes = std::vector<std::byte>;
constexpr uint64_t kBlock = 512;
constexpr uint64_t kRegion = 8192;
constexpr uint64_t kRegions = 20;
constexpr uint64_t kSize = kRegions * kRegion - 2048;  // a short last region
constexpr uint64_t kBlocks = kSize / kBlock;
constexpr int64_t kSourceValue = -1;
constexpr int64_t kAnything = -2;
constexpr int kOpsPerWorkload = 90;

uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 31)) * 0x7fb5d329728ea185;
  x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44d;
  return x ^ (x >> 33);
}

Bytes RandomBytes(size_t n, uint64_t seed) {
  Bytes bytes(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t word = Mix(seed * 1'000'003 + i);
    std::memcpy(&bytes[i], &word, 8);
  }
  return bytes;
}

absl::string_view AsText(const Bytes& bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// What the workload did, stamped with the shared clock.
struct UserOp {
  Op op;
  uint8_t flags = kNoFlags;
  uint64_t first_block = 0, blocks = 0;  // the blocks whose content it sets
  int64_t value = 0;                     // a seed, or kAnything for discards
  uint64_t submitted = 0, acknowledged = 0;
};

// Which ops' data was durable at a crash at `tick`: acknowledged with FUA, or
// followed by a flush (or PREFLUSH) acknowledged before the crash.
std::vector<bool> DurableOps(const std::vector<UserOp>& ops, uint64_t tick) {
  size_t flushed_before = 0;  // every op before this index is covered by a flush
  for (size_t j = 0; j < ops.size(); ++j) {
    if ((ops[j].op == Op::kFlush || (ops[j].flags & kPreflush)) && ops[j].acknowledged < tick)
      flushed_before = j;
  }
  std::vector<bool> durable(ops.size());
  for (size_t i = 0; i < ops.size(); ++i)
    durable[i] = i < flushed_before || ((ops[i].flags & kFua) && ops[i].acknowledged < tick);
  return durable;
}

// The content a block may hold after a crash at `tick` (clone-semantics I2, I3):
// the last durable value, or anything written after it that was submitted.
std::vector<int64_t> Allowed(const std::vector<UserOp>& ops, const std::vector<bool>& durable,
                             uint64_t block, uint64_t tick) {
  std::vector<int64_t> allowed = {kSourceValue};
  for (size_t i = 0; i < ops.size(); ++i) {
    const UserOp& o = ops[i];
    if (o.op == Op::kFlush || o.submitted >= tick || block < o.first_block ||
        block >= o.first_block + o.blocks)
      continue;
    if (durable[i]) allowed.clear();
    allowed.push_back(o.value);
  }
  return allowed;
}

class CloneCrashTest : public ::testing::Test {
 protected:
  using Guard = ReadOnlyGuard<MemoryDevice>;
  using Dest = RecordingDevice<MemoryDevice>;
  using RecordedClone = Clone<Guard, Dest, BufferedCopier<Guard, Dest>>;
  using ReplayClone = Clone<Guard, MemoryDevice, BufferedCopier<Guard, MemoryDevice>>;

  void SetUp() override {
    source_memory_->Fill(0, source_data_);
    geometry_ = *MakeCloneGeometry(source_.info(), DeviceInfo{.size = kSize, .caps = {}}, kRegion);
    meta_size_ = (PersistentMetadata::RequiredSize(geometry_) + 4095) / 4096 * 4096;
  }

  // Runs one random workload and replays every crash instant of it; returns
  // the number of crash states checked.
  uint64_t RunWorkload(uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto dest_memory = *MemoryDevice::Create({.size = kSize});
    dest_memory->Fill(0, RandomBytes(kSize, seed + 77));  // stale content a bug would expose
    auto meta_memory = *MemoryDevice::Create({.size = meta_size_});
    {
      auto formatted =
          PersistentMetadata::Open(AnyBlockDevice::Borrow(*meta_memory), geometry_);
      EXPECT_TRUE(formatted.ok()) << formatted.status();
    }
    const std::vector<Recording> initial = {{meta_memory->Contents(), {}},
                                            {dest_memory->Contents(), {}}};
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
    std::vector<Recording> recordings = {{initial[0].initial, meta.Log()},
                                         {initial[1].initial, dest.Log()}};
    uint64_t states = 0;
    for (uint64_t tick : CrashTicks(recordings)) {
      for (Landing landing :
           {Landing::kNone, Landing::kAll, Landing::kRandom, Landing::kRandomTorn}) {
        std::vector<Bytes> images = CrashImages(recordings, tick, landing, rng);
        distinct_.insert(absl::HashOf(AsText(images[0]), AsText(images[1])));
        CheckCrashState(images[0], images[1], ops, tick);
        ++states;
        if (HasFailure()) {
          ADD_FAILURE() << "crash at tick " << tick << " of workload " << seed << ", landing "
                        << static_cast<int>(landing);
          return states;
        }
      }
    }
    return states;
  }

  UserOp RunOne(RecordedClone& clone, std::mt19937_64& rng, RecordingClock& clock, int i) {
    UserOp op;
    const uint64_t first = rng() % kBlocks;
    const uint64_t count = 1 + rng() % std::min<uint64_t>(kBlocks - first, 2 * kRegion / kBlock);
    const uint64_t kind = rng() % 10;
    op.op = kind < 6 ? Op::kWrite : kind < 7 ? Op::kDiscard : kind < 8 ? Op::kWriteZeroes
                                                                       : Op::kFlush;
    if (op.op != Op::kFlush && op.op != Op::kDiscard) {
      const uint64_t f = rng() % 8;
      op.flags = f == 0 ? kFua : f == 1 ? kPreflush : kNoFlags;
    }
    op.submitted = clock.Tick();
    absl::Status status;
    switch (op.op) {
      case Op::kWrite: {
        op.first_block = first;
        op.blocks = count;
        op.value = i;
        Bytes data(count * kBlock);
        for (uint64_t b = 0; b < count; ++b) Fill(i, first + b, data.data() + b * kBlock);
        status = WriteAt(clone, first * kBlock, data, op.flags);
        break;
      }
      case Op::kWriteZeroes:
        op.first_block = first;
        op.blocks = count;
        op.value = kZeroValue;
        status = WriteZeroes(clone, first * kBlock, count * kBlock, op.flags);
        break;
      case Op::kDiscard: {
        // Only whole regions change (the short last one when the discard reaches the end).
        const uint64_t per = kRegion / kBlock, end = first + count;
        const uint64_t first_region = (first + per - 1) / per;
        const uint64_t end_block = end == kBlocks ? kBlocks : end / per * per;
        op.first_block = first_region * per;
        op.blocks = end_block > op.first_block ? end_block - op.first_block : 0;
        op.value = kAnything;
        status = Discard(clone, first * kBlock, count * kBlock);
        break;
      }
      default:
        status = Flush(clone);
    }
    op.acknowledged = clock.Tick();
    EXPECT_TRUE(status.ok()) << OpName(op.op) << ": " << status;
    return op;
  }

  static constexpr int64_t kZeroValue = -3;

  static void Fill(int64_t value, uint64_t block, std::byte* out) {
    const Bytes bytes = RandomBytes(kBlock, static_cast<uint64_t>(value) * 7919 + block);
    std::memcpy(out, bytes.data(), kBlock);
  }

  bool Matches(int64_t value, uint64_t block, const std::byte* actual) const {
    if (value == kAnything) return true;
    std::byte expected[kBlock];
    if (value == kSourceValue) {
      std::memcpy(expected, source_data_.data() + block * kBlock, kBlock);
    } else if (value == kZeroValue) {
      std::memset(expected, 0, kBlock);
    } else {
      Fill(value, block, expected);
    }
    return std::memcmp(expected, actual, kBlock) == 0;
  }

  void CheckCrashState(const Bytes& meta_image, const Bytes& dest_image,
                       const std::vector<UserOp>& ops, uint64_t tick) {
    auto meta_device = *MemoryDevice::Create({.size = meta_size_});
    meta_device->Fill(0, meta_image);
    AnyBlockDevice meta_any = AnyBlockDevice::Borrow(*meta_device);
    CheckReport report = Check(meta_any);
    ASSERT_TRUE(report.ok) << "Check failed: " << (report.problems.empty() ? "" : report.problems[0]);
    auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*meta_device), geometry_,
                                             {.read_only = true, .format_if_blank = false});
    ASSERT_TRUE(metadata.ok()) << "metadata did not open without repair: " << metadata.status();
    auto dest = *MemoryDevice::Create({.size = kSize});
    dest->Fill(0, dest_image);
    BufferedCopier<Guard, MemoryDevice> copier(source_, *dest);
    auto clone = *ReplayClone::Create(source_, *dest, copier, **metadata, {});
    Bytes content(kSize);
    ASSERT_TRUE(ReadAt(*clone, 0, content).ok());
    const std::vector<bool> durable = DurableOps(ops, tick);
    for (uint64_t block = 0; block < kBlocks; ++block) {
      bool ok = false;
      for (int64_t value : Allowed(ops, durable, block, tick))
        ok = ok || Matches(value, block, content.data() + block * kBlock);
      ASSERT_TRUE(ok) << "block " << block << " (region " << block * kBlock / kRegion
                      << ") holds data the contract does not allow";
    }
  }

  Bytes source_data_ = RandomBytes(kSize, 1);
  std::unique_ptr<MemoryDevice> source_memory_ = *MemoryDevice::Create({.size = kSize});
  Guard source_{*source_memory_, [](const Request& r) {
                  ADD_FAILURE() << "the source received a " << OpName(r.op);
                }};
  CloneGeometry geometry_;
  uint64_t meta_size_ = 0;
  std::set<size_t> distinct_;
};

TEST_F(CloneCrashTest, EveryCrashStateOpensChecksAndKeepsWhatWasPromised) {
  const char* env = std::getenv("BLKCLONE_CRASH_WORKLOADS");
  const int workloads = env != nullptr ? std::atoi(env) : 12;
  uint64_t states = 0;
  for (int w = 0; w < workloads && !HasFailure(); ++w) states += RunWorkload(1000 + w);
  std::cout << "crash states replayed: " << states << " (distinct: " << distinct_.size()
            << ") over " << workloads << " workloads\n";
  RecordProperty("crash_states", static_cast<int>(states));
  EXPECT_GT(states, 0u);
}

}  // namespace
}  // namespace blkclone

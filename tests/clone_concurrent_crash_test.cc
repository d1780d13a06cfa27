// Crash replay of a clone under concurrent load. Several submitters write
// (partial and full-region, FUA, PREFLUSH), write zeroes, discard, flush and
// read at once, while a Hydrator copies in the background and commits run
// every 2 ms, over a source, destination and metadata device that complete
// late, out of order and on their own threads. The fault workloads also fail
// one destination flush or metadata write (or flush) mid-run, which turns the
// clone read-only. Destination and metadata are recorded on one clock with the
// requests; every instant of the run is then replayed as a power failure, with
// none, all, random and torn subsets of the writes not yet durable, and
// CrashStateChecker checks each state: Check, read-write reopen, every block as
// the contract allows, then write, flush, crash again and check again. What
// the reads returned during the run is checked too.
//
// A debug build replays over 10,000 states of concurrent workloads and over
// 5,000 with faults (sanitizer builds sample fewer); BLKCLONE_CRASH_SCALE=N
// replays N times as many (the long run in docs/reliability.md).
// BLKCLONE_CRASH_SEED sets the first workload's seed; a rerun repeats its
// requests, not the threads' interleaving.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "crash_history.hpp"
#include "crash_state_checker.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using testing::BlockOracle;
using testing::History;
using testing::kCrashBlock;
using testing::kNever;
using testing::UserOp;
using Bytes = std::vector<std::byte>;

constexpr uint64_t kRegion = 4096;
constexpr uint64_t kPerRegion = kRegion / kCrashBlock;
constexpr uint64_t kRegions = 48;
constexpr uint64_t kSize = kRegions * kRegion - 1024;  // a short last region
constexpr uint64_t kBlocks = kSize / kCrashBlock;
constexpr int kSubmitters = 3;
constexpr int kOpsPerSubmitter = 24;
constexpr int kBurst = 6;  // submitters meet after each burst: the hydrator starts copies then

// Fails the run (aborting it, a failure rather than a hang) unless destroyed
// within `limit`.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::string what)
      : thread_([this, limit, what = std::move(what)] {
          internal::MutexLock lock(mu_);
          if (!done_cv_.WaitFor(mu_, limit,
                                [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; })) {
            std::cerr << "deadline of " << limit.count() << " s passed: " << what << std::endl;
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      internal::MutexLock lock(mu_);
      done_ = true;
      done_cv_.SignalAll();
    }
    thread_.join();
  }

 private:
  internal::Mutex mu_;
  internal::CondVar done_cv_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

enum class Fault { kNone, kDestFlush, kMetaWrite, kMetaWriteLanded, kMetaFlush };

const char* FaultName(Fault fault) {
  switch (fault) {
    case Fault::kNone:
      return "none";
    case Fault::kDestFlush:
      return "a failed destination flush";
    case Fault::kMetaWrite:
      return "a failed metadata write";
    case Fault::kMetaWriteLanded:
      return "a metadata write that landed but failed";
    case Fault::kMetaFlush:
      return "a failed metadata flush";
  }
  return "?";
}

// Passes copies on, counting those the hydrator started (background ones).
template <Copier Inner>
class CountingCopier {
 public:
  explicit CountingCopier(Inner& inner) : inner_(inner) {}
  void Copy(CopyJob& job) noexcept {
    if (job.background) background_.fetch_add(1, std::memory_order_relaxed);
    inner_.Copy(job);
  }
  uint64_t background() const { return background_.load(std::memory_order_relaxed); }

 private:
  Inner& inner_;
  std::atomic<uint64_t> background_{0};
};

// What a campaign of workloads did.
struct Tally {
  uint64_t states = 0, workloads = 0, read_only = 0, background_copies = 0;
};

class CloneConcurrentCrashTest : public ::testing::Test {
 protected:
  using Guard = ReadOnlyGuard<MemoryDevice>;
  using Source = DelayDevice<Guard>;
  using Recorded = RecordingDevice<DelayDevice<MemoryDevice>>;
  using Faulty = FaultInjectingDevice<Recorded>;
  using Buffered = BufferedCopier<Source, Faulty>;
  using RecordedClone = Clone<Source, Faulty, CountingCopier<Buffered>>;

  // Runs workloads until `target` states were replayed; prints the figure.
  void Campaign(const std::vector<Fault>& faults, uint64_t target, const std::string& label) {
    const char* seed_env = std::getenv("BLKCLONE_CRASH_SEED");
    const uint64_t first_seed = seed_env != nullptr ? std::strtoull(seed_env, nullptr, 10) : 5000;
    const char* scale_env = std::getenv("BLKCLONE_CRASH_SCALE");
    if (scale_env != nullptr) target *= std::max<uint64_t>(1, std::strtoull(scale_env, nullptr, 10));
    if (testing::kReplayStride > 1) target /= 4 * testing::kReplayStride;  // a few workloads
    Tally tally;
    while ((tally.states < target || tally.workloads < faults.size()) && !HasFailure()) {
      RunWorkload(first_seed + tally.workloads, faults[tally.workloads % faults.size()], tally);
      ++tally.workloads;
    }
    std::cout << label << "crash states replayed: " << tally.states
              << " (distinct: " << bench_.checker.distinct() << ") over " << tally.workloads
              << " workloads; " << tally.background_copies << " copies started by the hydrator";
    if (faults[0] != Fault::kNone)
      std::cout << "; read-only after the fault in " << tally.read_only;
    std::cout << "\n";
    RecordProperty("crash_states", static_cast<int>(tally.states));
    EXPECT_GT(tally.background_copies, 0u) << "the hydrator never ran";
  }

  // One recorded run and the replay of its crash states, added to `tally`.
  void RunWorkload(uint64_t seed, Fault fault, Tally& tally) {
    const std::string context =
        absl::StrCat("workload seed ", seed, " (BLKCLONE_CRASH_SEED), fault: ", FaultName(fault));
    Watchdog watchdog(std::chrono::seconds(300), context);
    std::mt19937_64 rng(seed);
    const auto [meta_memory, dest_memory] = bench_.NewDevices(seed);
    const Bytes meta_before = meta_memory->Contents(), dest_before = dest_memory->Contents();
    RecordingClock clock;
    History history;
    WriteLog meta_log, dest_log;
    {
      const auto delays = [&](std::chrono::microseconds max, int threads) {
        return DelayOptions{.max_delay = max, .worker_threads = threads, .seed = rng()};
      };
      Source source(bench_.source, delays(std::chrono::microseconds(100), 1));
      DelayDevice<MemoryDevice> dest_delayed(*dest_memory,
                                             delays(std::chrono::microseconds(300), 2));
      DelayDevice<MemoryDevice> meta_delayed(*meta_memory,
                                             delays(std::chrono::microseconds(100), 1));
      Recorded dest_recorded(dest_delayed, &clock), meta_recorded(meta_delayed, &clock);
      Faulty dest(dest_recorded), meta(meta_recorded);
      InjectFault(fault, rng, dest, meta);
      auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(meta), bench_.geometry,
                                               {.format_if_blank = true});
      if (!metadata.ok()) {
        ADD_FAILURE() << metadata.status();
        return;
      }
      Buffered buffered(source, dest, {.chunk_size = kRegion, .max_in_flight = 4});
      CountingCopier<Buffered> copier(buffered);
      auto clone = *RecordedClone::Create(source, dest, copier, **metadata,
                                          {.commit_interval = std::chrono::milliseconds(2)});
      {
        Hydrator<RecordedClone> hydrator(*clone, {.threshold = 2, .batch_size = 2});
        RunSubmitters(*clone, clock, history, rng());
        const absl::Status closed = clone->Close();
        if (fault == Fault::kNone) {
          EXPECT_TRUE(closed.ok()) << closed;
        }
      }
      if (clone->mode() != CloneMode::kReadWrite) ++tally.read_only;
      tally.background_copies += copier.background();
      meta_log = meta_recorded.Log();
      dest_log = dest_recorded.Log();
    }
    const std::vector<UserOp> ops = history.ops();
    BlockOracle oracle(ops, bench_.source_data);
    for (const UserOp& op : ops) {
      if (fault == Fault::kNone || op.op == Op::kRead) {
        EXPECT_TRUE(op.ok) << OpName(op.op) << " failed in " << context;
      }
      if (op.op != Op::kRead || !op.ok) continue;
      const uint64_t bad = oracle.FirstBadBlockOfRead(op, /*strict=*/fault == Fault::kNone);
      if (bad != kNever) {
        ADD_FAILURE() << "a read during the run returned data the contract does not allow in block "
                      << bad << " (region " << bad / kPerRegion << ") at ticks " << op.submitted
                      << "-" << op.acknowledged << ", " << context
                      << oracle.Explain(bad,
                                        op.read_data.data() + (bad - op.first_block) * kCrashBlock);
        return;
      }
    }

    std::string error;
    tally.states += bench_.checker.CheckAll({{meta_before, meta_log}, {dest_before, dest_log}},
                                            oracle, testing::kReplayStride, rng, error);
    if (!error.empty()) ADD_FAILURE() << error << " of " << context;
  }

  static void InjectFault(Fault fault, std::mt19937_64& rng, Faulty& dest, Faulty& meta) {
    // Past the first few commits, so that the run has marks committed and pending.
    const uint64_t skip = 2 + rng() % 10;
    switch (fault) {
      case Fault::kNone:
        break;
      case Fault::kDestFlush:
        dest.AddRule({.ops = {Op::kFlush}, .skip = skip, .count = 1});
        break;
      case Fault::kMetaWrite:
      case Fault::kMetaWriteLanded:
        meta.AddRule({.ops = {Op::kWrite},
                      .skip = 2 * skip,
                      .count = 1,
                      .pass_through = fault == Fault::kMetaWriteLanded});
        break;
      case Fault::kMetaFlush:
        meta.AddRule({.ops = {Op::kFlush}, .skip = 2 * skip, .count = 1});
        break;
    }
  }

  void RunSubmitters(RecordedClone& clone, RecordingClock& clock, History& history, uint64_t seed) {
    std::barrier meet(kSubmitters);
    std::vector<std::thread> threads;
    for (int t = 0; t < kSubmitters; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(seed + t);
        for (int i = 0; i < kOpsPerSubmitter; ++i) {
          if (i % kBurst == 0) meet.arrive_and_wait();
          history.Add(SubmitOne(clone, rng, clock, (t + 1) * 100'000 + i));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }

  // One random request, stamped with the clock around it.
  static UserOp SubmitOne(RecordedClone& clone, std::mt19937_64& rng, RecordingClock& clock,
                          int64_t value) {
    UserOp op{.value = value};
    const uint64_t kind = rng() % 20;
    op.first_block = rng() % kBlocks;
    op.blocks = 1 + rng() % std::min<uint64_t>(kBlocks - op.first_block, 2 * kPerRegion);
    if (kind >= 7 && kind < 10) {  // whole regions: the overwrite path
      const uint64_t region = rng() % (kRegions - 1);
      op.first_block = region * kPerRegion;
      op.blocks = (region + 2 < kRegions && rng() % 2 == 0 ? 2 : 1) * kPerRegion;
    }
    op.op = kind < 10    ? Op::kWrite
            : kind == 10 ? Op::kWriteZeroes
            : kind == 11 ? Op::kDiscard
            : kind < 14  ? Op::kFlush
                         : Op::kRead;
    if (op.op == Op::kWrite || op.op == Op::kWriteZeroes) {
      const uint64_t f = rng() % 8;
      op.flags = f == 0 ? kFua : f == 1 ? kPreflush : f == 2 ? (kFua | kPreflush) : kNoFlags;
    }
    testing::SubmitStamped(clone, kRegion, clock, op);
    return op;
  }

  testing::CrashBench bench_{kSize, kRegion};
};

TEST_F(CloneConcurrentCrashTest, EveryCrashStateOfConcurrentWorkloadsKeepsWhatWasPromised) {
  Campaign({Fault::kNone}, 10'000, "concurrent ");
}

TEST_F(CloneConcurrentCrashTest, EveryCrashStateAfterAFaultMidRunKeepsWhatWasPromised) {
  Campaign({Fault::kDestFlush, Fault::kMetaWrite, Fault::kMetaWriteLanded, Fault::kMetaFlush},
           5'000, "fault-injected concurrent ");
}

}  // namespace
}  // namespace blkclone

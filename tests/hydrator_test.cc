// Background hydration (clone-semantics "Background hydration"): dm-clone's
// policy and what blkclone adds, each behaviour asserted.
#include "blkclone/hydrator.hpp"

#include <atomic>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/paced_copier.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "bounded_wait.hpp"
#include "controlled_copier.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using Bytes = std::vector<std::byte>;
using testing::kWaitDeadline;
using testing::WaitUntil;
using namespace std::chrono_literals;

constexpr uint64_t kRegion = 16 << 10;
constexpr uint64_t kRegions = 64;
constexpr uint64_t kSize = kRegions * kRegion - 4096;  // a short last region

struct CountedEvents : CloneEvents {
  void OnHydrationComplete() override { completions.fetch_add(1); }
  void OnHydrationStopped(uint64_t region, const absl::Status& cause) override {
    stopped_region.store(region);
    EXPECT_FALSE(cause.ok());
    if (on_stop) on_stop();
    stops.fetch_add(1);
  }
  std::function<void()> on_stop;  // set before the hydrator starts
  std::atomic<int> completions{0}, stops{0};
  std::atomic<uint64_t> stopped_region{~uint64_t{0}};
};

class HydratorTest : public ::testing::Test {
 protected:
  using Source = FaultInjectingDevice<DelayDevice<MemoryDevice>>;
  using Dest = DelayDevice<MemoryDevice>;
  using Base = BufferedCopier<Source, Dest>;
  using Paced = PacedCopier<Base>;
  using Observed = ControlledCopier<Paced>;
  using TestClone = Clone<Source, Dest, Observed>;
  using TestHydrator = Hydrator<TestClone>;

  void SetUp() override {
    source_data_.resize(kSize);
    std::mt19937 rng(1);
    for (auto& b : source_data_) b = std::byte(rng());
    source_memory_->Fill(0, source_data_);
    dest_memory_->Fill(0, Bytes(kSize, std::byte{0xdd}));
    clone_ = *TestClone::Create(source_, dest_, copier_, metadata_, {.events = &events_});
  }
  void TearDown() override {
    copier_.Release();  // a failed assertion may have left copies held
    EXPECT_TRUE(clone_->Close().ok());
    hydrator_.reset();
  }

  void StartHydrator(HydratorOptions options) {
    hydrator_ = std::make_unique<TestHydrator>(*clone_, options, &events_);
  }
  bool Hydrated(uint64_t region) { return metadata_.map().IsSet(region); }
  // Once true, the scheduler has considered every change and event so far
  // and gone to sleep: whatever it was to start for them, it has started.
  bool Settled() {
    const uint64_t changes = hydrator_->changes();
    return WaitUntil([&] { return hydrator_->SettledAfter(changes); });
  }
  Bytes DestBytes() { return dest_memory_->Contents(); }

  std::unique_ptr<MemoryDevice> source_memory_ = *MemoryDevice::Create({.size = kSize});
  std::unique_ptr<MemoryDevice> dest_memory_ = *MemoryDevice::Create({.size = kSize});
  DelayDevice<MemoryDevice> delayed_source_{*source_memory_, {.max_delay = 100us}};
  Source source_{delayed_source_};
  Dest dest_{*dest_memory_, {.max_delay = 100us}};
  Base base_{source_, dest_, {.chunk_size = 8192, .max_in_flight = 16}};
  RateLimiter limiter_;
  Paced paced_{base_, limiter_};
  Observed copier_{paced_};
  InMemoryMetadata metadata_{*MakeCloneGeometry(source_.info(), dest_.info(), kRegion)};
  CountedEvents events_;
  Bytes source_data_;
  std::unique_ptr<TestClone> clone_;
  std::unique_ptr<TestHydrator> hydrator_;
};

TEST_F(HydratorTest, HydratesEverythingButWhatTheUserWroteOrDiscarded) {
  Bytes written(3000 / 512 * 512, std::byte{0x5a});
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion + 1024, written).ok());
  ASSERT_TRUE(Discard(*clone_, 20 * kRegion, 2 * kRegion).ok());
  StartHydrator({.threshold = 4, .batch_size = 3});
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_EQ(events_.completions.load(), 1);
  const Bytes dest = DestBytes();
  for (uint64_t offset = 0; offset < kSize; offset += 512) {
    const uint64_t region = offset / kRegion;
    if (region == 20 || region == 21) continue;  // discarded: any content
    const bool user = offset >= 5 * kRegion + 1024 && offset < 5 * kRegion + 1024 + written.size();
    const std::byte* expected = user ? written.data() : &source_data_[offset];
    ASSERT_EQ(std::memcmp(&dest[offset], expected, 512), 0) << "offset " << offset;
  }
  EXPECT_EQ(dest[20 * kRegion], std::byte{0}) << "discarded regions are passed down, not copied";
  const HydrationProgress progress = hydrator_->progress();
  EXPECT_TRUE(progress.complete);
  EXPECT_EQ(progress.hydrated_regions, kRegions);
  EXPECT_EQ(progress.hydrated_bytes, kSize);
}

TEST_F(HydratorTest, ReleasesTheRegionMapOnceCompleteAndKeepsServing) {
  StartHydrator({.threshold = 8, .batch_size = 8});
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  // Released at the first moment nothing is in flight (the last copy may still
  // be finishing when completion is announced).
  EXPECT_TRUE(WaitUntil([&] { return metadata_.map().released(); }));
  EXPECT_EQ(metadata_.map().CountSet(), kRegions);
  EXPECT_EQ(hydrator_->progress().hydrated_bytes, kSize);
  Bytes data(4096, std::byte{9}), back(4096);
  ASSERT_TRUE(WriteAt(*clone_, 3 * kRegion, data, kFua).ok());
  ASSERT_TRUE(ReadAt(*clone_, 3 * kRegion, back).ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(ReadAt(*clone_, 9 * kRegion, back).ok());
  EXPECT_EQ(std::memcmp(back.data(), &source_data_[9 * kRegion], 4096), 0);
}

TEST_F(HydratorTest, NeverExceedsTheThresholdAndBatchesContiguousRegions) {
  StartHydrator({.threshold = 5, .batch_size = 3});
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_LE(copier_.max_in_flight_bytes(), 5 * kRegion);
  bool batched = false;
  for (const auto& copy : copier_.log()) {
    EXPECT_TRUE(copy.background);
    EXPECT_LE(copy.length, 3 * kRegion);
    EXPECT_EQ(copy.offset % kRegion, 0u);
    batched = batched || copy.length > kRegion;
  }
  EXPECT_TRUE(batched) << "contiguous unhydrated regions were never copied together";
}

TEST_F(HydratorTest, ThresholdZeroStopsAndNoHydrationStartsDisabled) {
  StartHydrator({.start_enabled = false, .threshold = 2});
  ASSERT_TRUE(Settled());
  EXPECT_EQ(copier_.jobs(), 0);
  hydrator_->SetThreshold(0);
  hydrator_->Enable();
  ASSERT_TRUE(Settled());
  EXPECT_EQ(copier_.jobs(), 0);
  EXPECT_FALSE(hydrator_->WaitUntilComplete(1ms));
  hydrator_->SetThreshold(2);
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
}

TEST_F(HydratorTest, DisableStopsStartingCopiesAndEnableResumes) {
  copier_.Hold();
  StartHydrator({.threshold = 1});
  ASSERT_TRUE(WaitUntil([&] { return copier_.held() == 1; }));  // its first copy
  hydrator_->Disable();
  copier_.Release();
  // The end of that copy wakes the scheduler, which must start no other.
  ASSERT_TRUE(WaitUntil([&] { return hydrator_->regions_in_flight() == 0; }));
  ASSERT_TRUE(Settled());
  EXPECT_EQ(copier_.jobs(), 1) << "copies started while disabled";
  EXPECT_FALSE(hydrator_->progress().complete);
  hydrator_->Enable();
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
}

TEST_F(HydratorTest, PausesWhileUserRequestsAreInFlight) {
  copier_.Hold();
  // A write to region 0 waits on its hydration: a user request in flight.
  Bytes data(512, std::byte{1});
  Request write = Request::Write(0, data);
  std::atomic<bool> done{false};
  write.context = &done;
  write.on_complete = [](Request& r, absl::Status s) {
    EXPECT_TRUE(s.ok());
    static_cast<std::atomic<bool>*>(r.context)->store(true);
  };
  clone_->Submit(write);
  StartHydrator({.threshold = 8, .batch_size = 2});
  ASSERT_TRUE(Settled());
  EXPECT_EQ(copier_.jobs(), 1) << "background copies started while the user was busy";
  copier_.Release();
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_TRUE(done.load());
}

TEST_F(HydratorTest, UserHydrationsCountButAreNeverHeldBack) {
  limiter_.SetRate(256 << 10);
  StartHydrator({.threshold = 1});
  ASSERT_TRUE(WaitUntil([&] { return copier_.jobs() > 0; }));
  // The background copy fills the threshold; a write elsewhere still runs.
  ASSERT_TRUE(WriteAt(*clone_, 40 * kRegion, Bytes(512, std::byte{2})).ok());
  EXPECT_TRUE(Hydrated(40));
  limiter_.SetRate(0);
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
}

TEST_F(HydratorTest, RepeatedlyReadRegionsGoAheadOfTheCursor) {
  StartHydrator({.start_enabled = false, .threshold = 1, .hot_read_count = 2});
  Bytes block(4096);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(ReadAt(*clone_, 50 * kRegion, block).ok());
  ASSERT_TRUE(ReadAt(*clone_, 30 * kRegion, block).ok());  // read once: not hot
  hydrator_->Enable();
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  const auto log = copier_.log();
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log[0].offset, 50 * kRegion) << "the hot region was not copied first";
  EXPECT_EQ(log[1].offset, 0u) << "then the cursor starts at the beginning";
}

TEST_F(HydratorTest, HotRegionPolicyCanBeTurnedOff) {
  StartHydrator({.start_enabled = false, .threshold = 1, .hot_regions = false});
  Bytes block(4096);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ReadAt(*clone_, 50 * kRegion, block).ok());
  hydrator_->Enable();
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_EQ(copier_.log()[0].offset, 0u);
}

TEST_F(HydratorTest, RateLimitHoldsOverEveryWindow) {
  constexpr uint64_t kRate = 2 << 20;
  limiter_.SetRate(kRate);
  StartHydrator({.threshold = 8, .batch_size = 8});
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::pair<double, uint64_t>> samples;  // seconds, hydrated bytes
  while (!hydrator_->progress().complete) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, kWaitDeadline) << "not complete";
    std::this_thread::sleep_for(10ms);  // a sample every 10 ms
    samples.emplace_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
        hydrator_->progress().hydrated_bytes);
  }
  // The limiter starts with an empty bucket: the whole copy runs at the limit.
  const double elapsed = samples.back().first;
  const double rate = static_cast<double>(kSize) / elapsed;
  EXPECT_GT(rate, 0.9 * kRate) << "elapsed " << elapsed << " s";
  EXPECT_LT(rate, 1.1 * kRate) << "elapsed " << elapsed << " s";
  // Smooth: no 100 ms window holds much more than 100 ms worth (plus one batch in flight).
  for (size_t i = 0, j = 0; i < samples.size(); ++i) {
    while (samples[j].first < samples[i].first - 0.1) ++j;
    EXPECT_LE(samples[i].second - samples[j].second, kRate / 10 + 2 * 8 * kRegion)
        << "at " << samples[i].first << " s";
  }
}

TEST_F(HydratorTest, RetriesFailedCopiesWithBackoff) {
  source_.AddRule({.ops = {Op::kRead}, .range = ByteRange{7 * kRegion, kRegion}, .count = 2});
  StartHydrator({.threshold = 1, .max_consecutive_failures = 3,
                 .first_retry_delay = 5ms});
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_EQ(events_.stops.load(), 0);
  EXPECT_EQ(source_.counters().injected[Op::kRead], 2u);
  EXPECT_EQ(std::memcmp(&DestBytes()[7 * kRegion], &source_data_[7 * kRegion], kRegion), 0);
}

TEST_F(HydratorTest, StopsAfterRepeatedFailuresAndRestartsOnRequest) {
  // The region's first chunk fails: one failed read per attempt (its other
  // chunks are read side by side and succeed).
  source_.AddRule({.ops = {Op::kRead}, .range = ByteRange{9 * kRegion, 512},
                   .error = absl::InternalError("bad sector")});
  // From the stop on, any copy started stays in flight: held.
  std::atomic<int> jobs_at_stop{-1};
  events_.on_stop = [&] {
    copier_.Hold();
    jobs_at_stop.store(copier_.jobs());
  };
  StartHydrator({.threshold = 1, .max_consecutive_failures = 3, .first_retry_delay = 1ms});
  ASSERT_TRUE(WaitUntil([&] { return events_.stops.load() > 0; }));
  EXPECT_EQ(events_.stopped_region.load(), 9u);
  HydrationProgress progress = hydrator_->progress();
  EXPECT_TRUE(progress.stopped);
  EXPECT_EQ(progress.stop_reason.message(), "bad sector");
  EXPECT_EQ(source_.counters().injected[Op::kRead], 3u) << "exactly N attempts";
  ASSERT_TRUE(Settled());
  EXPECT_EQ(copier_.jobs(), jobs_at_stop.load()) << "copies continued after the stop";
  EXPECT_EQ(copier_.held(), 0u) << "copies continued after the stop";
  copier_.Release();
  source_.ClearRules();
  hydrator_->Restart();
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
  EXPECT_FALSE(hydrator_->progress().stopped);
}

TEST_F(HydratorTest, ReportsProgressRateAndEta) {
  limiter_.SetRate(2 << 20);
  StartHydrator({.threshold = 2, .batch_size = 2});
  ASSERT_TRUE(WaitUntil([&] { return hydrator_->progress().hydrated_regions >= 8; }));
  const HydrationProgress p = hydrator_->progress();
  EXPECT_EQ(p.total_regions, kRegions);
  EXPECT_EQ(p.total_bytes, kSize);
  EXPECT_EQ(p.hydrated_bytes, p.hydrated_regions * kRegion);
  EXPECT_GT(p.bytes_per_second, 0);
  ASSERT_TRUE(p.eta_seconds.has_value());
  EXPECT_GT(*p.eta_seconds, 0);
  limiter_.SetRate(0);
  ASSERT_TRUE(hydrator_->WaitUntilComplete(60s));
}

}  // namespace
}  // namespace blkclone

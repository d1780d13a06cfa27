// Sparse sources: holes are zeroed on the destination, never copied; reads of
// unhydrated holes need no source read; the clone describes its allocation;
// a source that cannot tell, or fails to, is copied whole.
#include <memory>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/extents.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::RandomBytes;
using Bytes = std::vector<std::byte>;

constexpr uint64_t kRegion = 16 << 10;
constexpr uint64_t kRegions = 12;
constexpr uint64_t kSize = kRegions * kRegion;

// Region 0 and 11: data; 2: data then a hole; 3 and 8: data in a 4 KiB
// block; the others: holes.
constexpr uint64_t kDataBytes = 2 * kRegion + kRegion / 2 + 2 * 4096;

Bytes SparseSource() {
  Bytes bytes(kSize);
  const Bytes random = RandomBytes(kSize, 5);
  const auto copy = [&](uint64_t offset, uint64_t length) {
    std::copy_n(random.begin() + offset, length, bytes.begin() + offset);
  };
  copy(0, kRegion);
  copy(11 * kRegion, kRegion);
  copy(2 * kRegion, kRegion / 2);
  copy(3 * kRegion + 8192, 4096);
  copy(8 * kRegion, 4096);
  return bytes;
}

struct EventLog : CloneEvents {
  void OnSourceAllocationUnknown(const absl::Status& cause) override {
    ++unknown;
    last_cause = cause;
  }
  std::atomic<int> unknown{0};
  absl::Status last_cause;
};

class CloneSparseTest : public ::testing::Test {
 protected:
  using Counted = CountingDevice<MemoryDevice>;
  using Source = FaultInjectingDevice<Counted>;
  using Dest = FaultInjectingDevice<MemoryDevice>;
  using Copier = BufferedCopier<Source, Dest>;
  using TestClone = Clone<Source, Dest, Copier>;

  void Open(CloneOptions options = {}, Capabilities source_caps = MemoryDevice::Options().caps,
            Capabilities dest_caps = MemoryDevice::Options().caps) {
    source_memory_ = *MemoryDevice::Create({.size = kSize, .caps = source_caps});
    source_data_ = SparseSource();
    source_memory_->FillData(source_data_);
    counted_ = std::make_unique<Counted>(*source_memory_);
    source_ = std::make_unique<Source>(*counted_);
    dest_memory_ = *MemoryDevice::Create({.size = kSize, .caps = dest_caps});
    dest_memory_->Fill(0, RandomBytes(kSize, 9));  // stale content a missed zeroing shows
    dest_ = std::make_unique<Dest>(*dest_memory_);
    copier_ = std::make_unique<Copier>(*source_, *dest_, BufferedCopierOptions{.chunk_size = 4096});
    metadata_ = std::make_unique<InMemoryMetadata>(
        *MakeCloneGeometry(source_->info(), dest_->info(), kRegion));
    options.events = &events_;
    auto clone = TestClone::Create(*source_, *dest_, *copier_, *metadata_, options);
    ASSERT_TRUE(clone.ok()) << clone.status();
    clone_ = std::move(*clone);
  }

  void HydrateAll(HydratorOptions options = {.threshold = 64, .batch_size = 4}) {
    Hydrator<TestClone> hydrator(*clone_, options);
    ASSERT_TRUE(hydrator.WaitUntilComplete(std::chrono::seconds(30)));
  }

  Bytes Read(uint64_t offset, uint64_t length) {
    Bytes out(length);
    EXPECT_TRUE(ReadAt(*clone_, offset, out).ok());
    return out;
  }
  uint64_t SourceBytesRead() { return counted_->Snapshot().bytes_submitted[Op::kRead]; }
  uint64_t SourceQueries() { return counted_->Snapshot().submitted[Op::kBlockStatus]; }

  std::unique_ptr<MemoryDevice> source_memory_, dest_memory_;
  std::unique_ptr<Counted> counted_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<Dest> dest_;
  std::unique_ptr<Copier> copier_;
  std::unique_ptr<InMemoryMetadata> metadata_;
  EventLog events_;
  std::unique_ptr<TestClone> clone_;
  Bytes source_data_;
};

TEST_F(CloneSparseTest, HydrationCopiesOnlyDataAndZeroesTheHolesOnTheDestination) {
  Open();
  HydrateAll();
  EXPECT_EQ(SourceBytesRead(), kDataBytes);
  EXPECT_EQ(dest_memory_->Contents(), source_data_) << "a hole kept the destination's old bytes";
  EXPECT_EQ(clone_->copied_bytes(), kDataBytes);
  EXPECT_EQ(clone_->zeroed_bytes(), kSize - kDataBytes);
  // Thin: the destination's holes are where the source's are.
  EXPECT_EQ(*DescribeAllocation(*dest_memory_, 0, kSize),
            *DescribeAllocation(*source_memory_, 0, kSize));
  EXPECT_EQ(events_.unknown, 0);
}

TEST_F(CloneSparseTest, ABatchOverHolesReachesPastTheBatchSizeButNotPastTheWindow) {
  Open({.allocation_window = 8 * kRegion});
  // Regions 4..7 are holes, up to the window's end at region 8.
  EXPECT_EQ(*clone_->StartBackgroundHydration(4, 1), 4u);
  // Region 9 and 10 are holes, then data: the batch stays the batch there.
  EXPECT_EQ(*clone_->StartBackgroundHydration(9, 4), 3u);
  ASSERT_TRUE(clone_->Close().ok());
  for (uint64_t region : {4, 5, 6, 7, 9, 10, 11}) EXPECT_TRUE(metadata_->map().IsSet(region));
  EXPECT_EQ(SourceBytesRead(), kRegion) << "only region 11 holds data";
}

TEST_F(CloneSparseTest, ReadsOfUnhydratedHolesAnswerZeroesWithoutReadingTheSource) {
  Open();
  clone_->CountDataBytes();  // the source has described itself
  const uint64_t queries = SourceQueries();
  EXPECT_EQ(Read(kRegion, kRegion), Bytes(kRegion));
  EXPECT_EQ(Read(4 * kRegion, 4 * kRegion), Bytes(4 * kRegion));
  EXPECT_EQ(Read(2 * kRegion + kRegion / 2, kRegion / 2), Bytes(kRegion / 2));
  EXPECT_EQ(SourceBytesRead(), 0u);
  EXPECT_EQ(Read(0, kSize), source_data_);
  EXPECT_EQ(SourceBytesRead(), 5 * kRegion) << "a region with any data is read whole";
  EXPECT_EQ(SourceQueries(), queries) << "the answer was asked again";
  EXPECT_EQ(metadata_->map().CountSet(), 0u);
}

TEST_F(CloneSparseTest, ReadsBeforeTheSourceHasAnsweredGoToTheSource) {
  Open();
  EXPECT_EQ(Read(0, kRegion), Bytes(source_data_.begin(), source_data_.begin() + kRegion));
  EXPECT_EQ(Read(kSize - kRegion, kRegion), Bytes(source_data_.end() - kRegion, source_data_.end()));
  EXPECT_EQ(SourceBytesRead(), 2 * kRegion);
}

TEST_F(CloneSparseTest, APartialWriteToAPartlyHoledRegionCopiesOnlyItsData) {
  Open();
  clone_->CountDataBytes();
  const Bytes data = RandomBytes(4096, 3);
  ASSERT_TRUE(WriteAt(*clone_, 2 * kRegion + kRegion - 4096, data).ok());
  EXPECT_EQ(SourceBytesRead(), kRegion / 2);
  Bytes expected(source_data_.begin() + 2 * kRegion, source_data_.begin() + 3 * kRegion);
  std::copy(data.begin(), data.end(), expected.end() - 4096);
  EXPECT_EQ(Read(2 * kRegion, kRegion), expected);
}

TEST_F(CloneSparseTest, ADestinationThatCannotZeroGetsEverythingCopied) {
  Open({}, MemoryDevice::Options().caps, {.block_status = true});
  HydrateAll();
  EXPECT_EQ(SourceBytesRead(), kSize);
  EXPECT_EQ(dest_memory_->Contents(), source_data_);
}

TEST_F(CloneSparseTest, ASourceThatCannotTellIsCopiedWholeWithoutBeingAsked) {
  Open({}, {.discard = true, .discard_zeroes_data = true, .write_zeroes = true});
  HydrateAll();
  EXPECT_EQ(SourceBytesRead(), kSize);
  EXPECT_EQ(SourceQueries(), 0u);
  EXPECT_EQ(dest_memory_->Contents(), source_data_);
}

TEST_F(CloneSparseTest, SkipHolesOffCopiesEverything) {
  Open({.skip_holes = false});
  HydrateAll();
  EXPECT_EQ(SourceBytesRead(), kSize);
  EXPECT_EQ(SourceQueries(), 0u);
  EXPECT_EQ(dest_memory_->Contents(), source_data_);
}

TEST_F(CloneSparseTest, AFailedQueryFallsBackToCopyingEverythingAndIsReportedOnce) {
  Open({.allocation_window = 4 * kRegion});
  source_->AddRule({.ops = {Op::kBlockStatus}, .error = absl::UnavailableError("no extents")});
  HydrateAll();
  EXPECT_EQ(events_.unknown, 1);
  EXPECT_EQ(events_.last_cause.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SourceBytesRead(), kSize);
  EXPECT_EQ(dest_memory_->Contents(), source_data_);
}

TEST_F(CloneSparseTest, AFailedZeroingLeavesTheRegionUnhydratedAndStillReadingZeroes) {
  Open();
  clone_->CountDataBytes();
  dest_->AddRule({.ops = {Op::kDiscard}, .count = 2});
  EXPECT_EQ(*clone_->StartBackgroundHydration(1, 1), 1u);
  EXPECT_FALSE(metadata_->map().IsSet(1));
  EXPECT_EQ(Read(kRegion, kRegion), Bytes(kRegion));
  EXPECT_EQ(clone_->HydrateRange(kRegion, 1).code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(metadata_->map().IsSet(1));
  EXPECT_TRUE(clone_->HydrateRange(kRegion, 512).ok());
  EXPECT_TRUE(metadata_->map().IsSet(1));
}

TEST_F(CloneSparseTest, TheCloneDescribesSourceHolesThenTheDestinations) {
  Open();
  const std::vector<Extent> source = *DescribeAllocation(*source_memory_, 0, kSize);
  EXPECT_EQ(*DescribeAllocation(*clone_, 0, kSize), source);
  HydrateAll();
  EXPECT_EQ(*DescribeAllocation(*clone_, 0, kSize), source);
  // A user's write makes its blocks data.
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, RandomBytes(4096, 4)).ok());
  const std::vector<Extent> after = *DescribeAllocation(*clone_, 4 * kRegion, 2 * kRegion);
  EXPECT_EQ(after, (std::vector<Extent>{{4 * kRegion, kRegion, true},
                                        {5 * kRegion, 4096, false},
                                        {5 * kRegion + 4096, kRegion - 4096, true}}));
}

TEST_F(CloneSparseTest, HalfHydratedTheCloneAsksEachDeviceForItsPart) {
  Open();
  ASSERT_TRUE(clone_->HydrateRange(0, 3 * kRegion).ok());
  EXPECT_EQ(clone_->DescribeHydration(kRegion, 3 * kRegion),
            (std::vector<RangeState>{{kRegion, 2 * kRegion, true}, {3 * kRegion, kRegion, false}}));
  dest_->AddRule({.ops = {Op::kBlockStatus}, .count = 1});
  EXPECT_FALSE(DescribeAllocation(*clone_, 0, kSize).ok()) << "a failed part fails the whole";
  absl::StatusOr<std::vector<Extent>> extents = DescribeAllocation(*clone_, 0, kSize);
  ASSERT_TRUE(extents.ok()) << extents.status();
  EXPECT_EQ(*extents, *DescribeAllocation(*source_memory_, 0, kSize));
}

TEST_F(CloneSparseTest, HydrateRangeCoversExactlyTheRegionsItTouches) {
  Open();
  ASSERT_TRUE(clone_->HydrateRange(kRegion + 512, kRegion).ok());
  EXPECT_EQ(clone_->DescribeHydration(0, kSize),
            (std::vector<RangeState>{{0, kRegion, false},
                                     {kRegion, 2 * kRegion, true},
                                     {3 * kRegion, kSize - 3 * kRegion, false}}));
  EXPECT_EQ(clone_->HydrateRange(kSize, 512).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(clone_->Close().ok());
  EXPECT_EQ(clone_->HydrateRange(0, 512).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CloneSparseTest, CountsDataApartFromHoles) {
  Open();
  ASSERT_TRUE(clone_->HydrateRange(0, kRegion).ok());
  const auto bytes = clone_->CountDataBytes();
  EXPECT_EQ(bytes.total, kDataBytes);
  EXPECT_EQ(bytes.unhydrated, kDataBytes - kRegion);
}

}  // namespace
}  // namespace blkclone

// The clone under device faults and over a guarded source: errors reach the
// request that met them, nothing is lost or marked wrongly, nothing hangs,
// and the source is never written, flushed or discarded.
#include <random>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using Bytes = std::vector<std::byte>;
constexpr uint64_t kRegion = 8192;
constexpr uint64_t kSize = 32 * kRegion;

struct RecordedEvents : CloneEvents {
  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    EXPECT_FALSE(cause.ok());
    modes.push_back(mode);
  }
  std::vector<CloneMode> modes;  // changes arrive from the committer, one at a time
};

class CloneFaultsTest : public ::testing::Test {
 protected:
  using Source = FaultInjectingDevice<ReadOnlyGuard<MemoryDevice>>;
  using Dest = FaultInjectingDevice<MemoryDevice>;
  using TestClone = Clone<Source, Dest, BufferedCopier<Source, Dest>>;

  void SetUp() override {
    source_data_.resize(kSize);
    std::mt19937 rng(5);
    for (auto& b : source_data_) b = std::byte(rng());
    source_memory_->Fill(0, source_data_);
    clone_ = *TestClone::Create(source_, dest_, copier_, metadata_, {.events = &events_});
  }

  Bytes SourceSlice(uint64_t offset, uint64_t length) {
    return Bytes(source_data_.begin() + offset, source_data_.begin() + offset + length);
  }

  std::unique_ptr<MemoryDevice> source_memory_ = *MemoryDevice::Create({.size = kSize});
  std::unique_ptr<MemoryDevice> dest_memory_ = *MemoryDevice::Create({.size = kSize});
  ReadOnlyGuard<MemoryDevice> guard_{*source_memory_, [](const Request& r) {
                                       ADD_FAILURE() << "the source received a " << OpName(r.op);
                                     }};
  Source source_{guard_};
  Dest dest_{*dest_memory_};
  BufferedCopier<Source, Dest> copier_{source_, dest_};
  InMemoryMetadata metadata_{*MakeCloneGeometry(source_.info(), dest_.info(), kRegion)};
  Bytes source_data_;
  RecordedEvents events_;
  std::unique_ptr<TestClone> clone_;
};

TEST_F(CloneFaultsTest, SourceReadErrorFailsTheReadAndTheNextOneWorks) {
  source_.AddRule({.ops = {Op::kRead}, .count = 1, .error = absl::InternalError("source EIO")});
  Bytes data(kRegion);
  absl::Status failed = ReadAt(*clone_, 0, data);
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(failed.message(), "source EIO");
  ASSERT_TRUE(ReadAt(*clone_, 0, data).ok());
  EXPECT_EQ(data, SourceSlice(0, kRegion));
}

TEST_F(CloneFaultsTest, SourceErrorDuringHydrationFailsTheWriteAndMarksNothing) {
  source_.AddRule({.ops = {Op::kRead}, .count = 1});
  Bytes patch(512, std::byte{1});
  EXPECT_EQ(WriteAt(*clone_, kRegion + 512, patch).code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(metadata_.map().IsSet(1));
  ASSERT_TRUE(WriteAt(*clone_, kRegion + 512, patch).ok());  // retried, now fine
  Bytes expected = SourceSlice(kRegion, kRegion);
  std::copy(patch.begin(), patch.end(), expected.begin() + 512);
  Bytes region(kRegion);
  ASSERT_TRUE(ReadAt(*clone_, kRegion, region).ok());
  EXPECT_EQ(region, expected);
}

TEST_F(CloneFaultsTest, DestinationWriteErrorFailsTheRequestOnly) {
  ASSERT_TRUE(WriteAt(*clone_, 0, Bytes(512, std::byte{1})).ok());  // region 0 hydrated
  dest_.AddRule({.ops = {Op::kWrite}, .count = 1, .error = absl::InternalError("dest EIO")});
  EXPECT_EQ(WriteAt(*clone_, 1024, Bytes(512, std::byte{2})).code(),
            absl::StatusCode::kInternal);
  ASSERT_TRUE(WriteAt(*clone_, 1024, Bytes(512, std::byte{3})).ok());
  Bytes back(512);
  ASSERT_TRUE(ReadAt(*clone_, 1024, back).ok());
  EXPECT_EQ(back, Bytes(512, std::byte{3}));
}

TEST_F(CloneFaultsTest, DestinationErrorDuringHydrationLeavesTheRegionUnhydrated) {
  dest_.AddRule({.ops = {Op::kWrite}, .count = 1});
  EXPECT_FALSE(WriteAt(*clone_, 3 * kRegion, Bytes(512, std::byte{1})).ok());
  EXPECT_FALSE(metadata_.map().IsSet(3));
  // A failed full-region overwrite leaves it unhydrated too.
  dest_.AddRule({.ops = {Op::kWrite}, .count = 1});
  EXPECT_FALSE(WriteAt(*clone_, 4 * kRegion, Bytes(kRegion, std::byte{2})).ok());
  EXPECT_FALSE(metadata_.map().IsSet(4));
  Bytes region(kRegion);
  ASSERT_TRUE(ReadAt(*clone_, 4 * kRegion, region).ok());
  EXPECT_EQ(region, SourceSlice(4 * kRegion, kRegion));
}

TEST_F(CloneFaultsTest, FailedCommitSwitchesToReadOnlyAndKeepsWhatWasCommitted) {
  ASSERT_TRUE(WriteAt(*clone_, 2 * kRegion, Bytes(512, std::byte{7}), kFua).ok());  // committed
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, Bytes(512, std::byte{1})).ok());        // not yet
  dest_.AddRule({.ops = {Op::kFlush}, .count = 1, .error = absl::InternalError("flush EIO")});
  EXPECT_EQ(Flush(*clone_).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(clone_->mode(), CloneMode::kReadOnly);
  ASSERT_EQ(events_.modes.size(), 1u);
  EXPECT_EQ(events_.modes[0], CloneMode::kReadOnly);
  EXPECT_FALSE(metadata_.CommittedRegions()[5]) << "committed before its data was durable (I1)";
  // The committed state was reloaded: region 5 reads from the source again.
  EXPECT_FALSE(metadata_.map().IsSet(5));
  Bytes region(kRegion);
  ASSERT_TRUE(ReadAt(*clone_, 5 * kRegion, region).ok());
  EXPECT_EQ(region, SourceSlice(5 * kRegion, kRegion));
  // Reads and writes of committed regions work; anything needing a new mark fails.
  ASSERT_TRUE(ReadAt(*clone_, 2 * kRegion, region).ok());
  EXPECT_EQ(region[0], std::byte{7});
  EXPECT_TRUE(WriteAt(*clone_, 2 * kRegion, Bytes(512, std::byte{8})).ok());
  EXPECT_EQ(StatusToErrno(WriteAt(*clone_, 6 * kRegion, Bytes(512, std::byte{1}))), EIO);
  EXPECT_EQ(StatusToErrno(Discard(*clone_, 0, kRegion)), EIO);
  EXPECT_TRUE(Flush(*clone_).ok()) << "nothing to commit: a plain destination flush";
  // Reopening returns to rw.
  ASSERT_TRUE(clone_->Close().ok());
  clone_ = *TestClone::Create(source_, dest_, copier_, metadata_, {});
  EXPECT_EQ(clone_->mode(), CloneMode::kReadWrite);
  EXPECT_TRUE(WriteAt(*clone_, 6 * kRegion, Bytes(512, std::byte{1}), kFua).ok());
}

TEST_F(CloneFaultsTest, UnreadableCommittedStateMeansFail) {
  metadata_.FailNextReload();
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, Bytes(512, std::byte{1})).ok());
  dest_.AddRule({.ops = {Op::kFlush}, .count = 1});
  EXPECT_FALSE(Flush(*clone_).ok());
  EXPECT_EQ(clone_->mode(), CloneMode::kFail);
  ASSERT_EQ(events_.modes.size(), 2u);
  EXPECT_EQ(events_.modes[1], CloneMode::kFail);
  Bytes block(512);
  EXPECT_EQ(StatusToErrno(ReadAt(*clone_, 0, block)), EIO);
  EXPECT_EQ(StatusToErrno(Flush(*clone_)), EIO);
}

TEST_F(CloneFaultsTest, DiscardPassdownErrorFailsTheDiscard) {
  dest_.AddRule({.ops = {Op::kDiscard}, .count = 1});
  EXPECT_EQ(Discard(*clone_, 0, 2 * kRegion).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(guard_.violations(), 0u);
}

}  // namespace
}  // namespace blkclone

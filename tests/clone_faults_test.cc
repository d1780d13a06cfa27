// The clone under device faults and over a guarded source: errors reach the
// request that met them, nothing is lost or marked wrongly, nothing hangs,
// and the source is never written, flushed or discarded.
#include <algorithm>
#include <condition_variable>
#include <mutex>
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
#include "gated_device.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using Bytes = std::vector<std::byte>;
using testing::GatedDevice;
using testing::InFlight;
constexpr uint64_t kRegion = 8192;
constexpr uint64_t kSize = 32 * kRegion;

// Mode changes arrive on the committer's thread.
class RecordedEvents : public CloneEvents {
 public:
  void OnModeChange(CloneMode mode, const absl::Status& cause) override {
    EXPECT_FALSE(cause.ok());
    std::lock_guard lock(mu_);
    modes_.push_back(mode);
    changed_.notify_all();
  }
  std::vector<CloneMode> modes() {
    std::lock_guard lock(mu_);
    return modes_;
  }
  // True once `mode` was entered; false if the deadline passes first.
  [[nodiscard]] bool WaitFor(CloneMode mode) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, testing::kTestDeadline, [&] {
      return std::find(modes_.begin(), modes_.end(), mode) != modes_.end();
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<CloneMode> modes_;
};

class CloneFaultsTest : public ::testing::Test {
 protected:
  using Source = FaultInjectingDevice<ReadOnlyGuard<MemoryDevice>>;
  using Dest = GatedDevice<FaultInjectingDevice<MemoryDevice>>;
  using TestClone = Clone<Source, Dest, BufferedCopier<Source, Dest>>;

  void SetUp() override {
    source_data_.resize(kSize);
    std::mt19937 rng(5);
    for (auto& b : source_data_) b = std::byte(rng());
    source_memory_->Fill(0, source_data_);
    clone_ = *TestClone::Create(source_, dest_, copier_, metadata_, {.events = &events_});
  }

  // Fails the next destination flush, so the commit that needs it fails.
  void FailNextDestinationFlush() {
    dest_faults_.AddRule(
        {.ops = {Op::kFlush}, .count = 1, .error = absl::InternalError("flush EIO")});
  }

  // Region `region` written partly (so hydrated and marked) and not yet committed.
  void WritePartly(uint64_t region, std::byte value = std::byte{1}) {
    ASSERT_TRUE(WriteAt(*clone_, region * kRegion + 512, Bytes(512, value)).ok());
  }

  // Makes a commit fail: the clone goes ro, dropping the marks since the last commit.
  void FailACommit() {
    WritePartly(9);
    FailNextDestinationFlush();
    ASSERT_FALSE(Flush(*clone_).ok());
    ASSERT_EQ(clone_->mode(), CloneMode::kReadOnly);
  }

  Bytes ReadRegion(uint64_t region) {
    Bytes data(kRegion);
    EXPECT_TRUE(ReadAt(*clone_, region * kRegion, data).ok());
    return data;
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
  FaultInjectingDevice<MemoryDevice> dest_faults_{*dest_memory_};
  Dest dest_{dest_faults_};
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
  dest_faults_.AddRule({.ops = {Op::kWrite}, .count = 1, .error = absl::InternalError("dest EIO")});
  EXPECT_EQ(WriteAt(*clone_, 1024, Bytes(512, std::byte{2})).code(),
            absl::StatusCode::kInternal);
  ASSERT_TRUE(WriteAt(*clone_, 1024, Bytes(512, std::byte{3})).ok());
  Bytes back(512);
  ASSERT_TRUE(ReadAt(*clone_, 1024, back).ok());
  EXPECT_EQ(back, Bytes(512, std::byte{3}));
}

TEST_F(CloneFaultsTest, DestinationErrorDuringHydrationLeavesTheRegionUnhydrated) {
  dest_faults_.AddRule({.ops = {Op::kWrite}, .count = 1});
  EXPECT_FALSE(WriteAt(*clone_, 3 * kRegion, Bytes(512, std::byte{1})).ok());
  EXPECT_FALSE(metadata_.map().IsSet(3));
  // A failed full-region overwrite leaves it unhydrated too.
  dest_faults_.AddRule({.ops = {Op::kWrite}, .count = 1});
  EXPECT_FALSE(WriteAt(*clone_, 4 * kRegion, Bytes(kRegion, std::byte{2})).ok());
  EXPECT_FALSE(metadata_.map().IsSet(4));
  Bytes region(kRegion);
  ASSERT_TRUE(ReadAt(*clone_, 4 * kRegion, region).ok());
  EXPECT_EQ(region, SourceSlice(4 * kRegion, kRegion));
}

TEST_F(CloneFaultsTest, FailedCommitSwitchesToReadOnlyAndKeepsWhatWasCommitted) {
  ASSERT_TRUE(WriteAt(*clone_, 2 * kRegion, Bytes(512, std::byte{7}), kFua).ok());  // committed
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, Bytes(512, std::byte{1})).ok());        // not yet
  dest_faults_.AddRule({.ops = {Op::kFlush}, .count = 1, .error = absl::InternalError("flush EIO")});
  EXPECT_EQ(Flush(*clone_).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(clone_->mode(), CloneMode::kReadOnly);
  ASSERT_EQ(events_.modes().size(), 1u);
  EXPECT_EQ(events_.modes()[0], CloneMode::kReadOnly);
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
  // The write to region 5 was acknowledged and is gone: no FLUSH may succeed now.
  EXPECT_EQ(StatusToErrno(Flush(*clone_)), EIO);
  EXPECT_EQ(StatusToErrno(clone_->Close()), EIO) << "Close reports the marks still owed";
  // Reopening returns to rw.
  clone_ = *TestClone::Create(source_, dest_, copier_, metadata_, {});
  EXPECT_EQ(clone_->mode(), CloneMode::kReadWrite);
  EXPECT_TRUE(WriteAt(*clone_, 6 * kRegion, Bytes(512, std::byte{1}), kFua).ok());
}

TEST_F(CloneFaultsTest, UnreadableCommittedStateMeansFail) {
  metadata_.FailNextReload();
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, Bytes(512, std::byte{1})).ok());
  dest_faults_.AddRule({.ops = {Op::kFlush}, .count = 1});
  EXPECT_FALSE(Flush(*clone_).ok());
  EXPECT_EQ(clone_->mode(), CloneMode::kFail);
  ASSERT_EQ(events_.modes().size(), 2u);
  EXPECT_EQ(events_.modes()[1], CloneMode::kFail);
  Bytes block(512);
  EXPECT_EQ(StatusToErrno(ReadAt(*clone_, 0, block)), EIO);
  EXPECT_EQ(StatusToErrno(Flush(*clone_)), EIO);
}

TEST_F(CloneFaultsTest, DiscardPassdownErrorFailsTheDiscard) {
  dest_faults_.AddRule({.ops = {Op::kDiscard}, .count = 1});
  EXPECT_EQ(Discard(*clone_, 0, 2 * kRegion).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(guard_.violations(), 0u);
}

TEST_F(CloneFaultsTest, FullRegionOverwriteLandingAfterTheSwitchFails) {
  const Bytes fresh(kRegion, std::byte{0x5a});
  dest_.Hold([](const Request& r) { return r.op == Op::kWrite && r.offset == 5 * kRegion; });
  InFlight overwrite(*clone_, Request::Write(5 * kRegion, fresh));
  ASSERT_TRUE(dest_.WaitHeld(1));
  FailACommit();
  dest_.Release();  // the overwrite lands in ro: its region cannot be marked
  std::optional<absl::Status> status = overwrite.Await();
  ASSERT_TRUE(status);
  EXPECT_EQ(StatusToErrno(*status), EIO);
  EXPECT_FALSE(metadata_.map().IsSet(5));
  EXPECT_EQ(ReadRegion(5), SourceSlice(5 * kRegion, kRegion)) << "what a failed write leaves";
}

TEST_F(CloneFaultsTest, FlushAfterAFailedPeriodicCommitFails) {
  ASSERT_TRUE(clone_->Close().ok());
  clone_ = *TestClone::Create(source_, dest_, copier_, metadata_,
                              {.commit_interval = std::chrono::milliseconds(1), .events = &events_});
  FailNextDestinationFlush();
  WritePartly(4);  // the next periodic commit fails and drops its mark
  ASSERT_TRUE(events_.WaitFor(CloneMode::kReadOnly));
  EXPECT_EQ(StatusToErrno(Flush(*clone_)), EIO) << "the write to region 4 is not durable";
  EXPECT_EQ(ReadRegion(4), SourceSlice(4 * kRegion, kRegion));
}

TEST_F(CloneFaultsTest, PartialFuaWriteInFlightAcrossTheSwitchFails) {
  WritePartly(2);
  dest_.Hold([](const Request& r) { return r.op == Op::kFlush; });
  InFlight flush(*clone_, Request::Flush());  // its commit waits for the held flush
  ASSERT_TRUE(dest_.WaitHeld(1));
  // Hydrates region 7, marks it after the seal, then waits for the next commit.
  InFlight fua(*clone_, Request::Write(7 * kRegion + 512, Bytes(512, std::byte{3}), kFua));
  FailNextDestinationFlush();
  dest_.Release();
  ASSERT_TRUE(flush.Await());
  EXPECT_FALSE(flush.Await()->ok());
  ASSERT_TRUE(fua.Await());
  EXPECT_EQ(StatusToErrno(*fua.Await()), EIO) << "acknowledged, but region 7's mark is gone";
  EXPECT_EQ(ReadRegion(7), SourceSlice(7 * kRegion, kRegion));
}

TEST_F(CloneFaultsTest, FlushQueuedBehindTheFailingCommitFails) {
  WritePartly(2);
  dest_.Hold([](const Request& r) { return r.op == Op::kFlush; });
  InFlight first(*clone_, Request::Flush());
  ASSERT_TRUE(dest_.WaitHeld(1));
  WritePartly(7);  // marked after the seal of the commit under way
  InFlight second(*clone_, Request::Flush());
  FailNextDestinationFlush();
  dest_.Release();
  ASSERT_TRUE(first.Await());
  EXPECT_FALSE(first.Await()->ok());
  ASSERT_TRUE(second.Await());
  EXPECT_EQ(StatusToErrno(*second.Await()), EIO) << "region 7's write was dropped";
  EXPECT_EQ(ReadRegion(7), SourceSlice(7 * kRegion, kRegion));
}

TEST_F(CloneFaultsTest, DiscardsInReadOnlyFollowDmClone) {
  WritePartly(2);
  ASSERT_TRUE(Flush(*clone_).ok());  // region 2 hydrated and committed
  FailACommit();
  // A hydrated range is passed down (dm-clone: complete_discard_bio).
  const uint64_t discards = dest_.forwarded(Op::kDiscard);
  EXPECT_TRUE(Discard(*clone_, 2 * kRegion, kRegion).ok());
  EXPECT_EQ(dest_.forwarded(Op::kDiscard), discards + 1);
  // Any other range cannot be marked, so it is ignored (and succeeds).
  EXPECT_TRUE(Discard(*clone_, 0, 2 * kRegion).ok());
  EXPECT_TRUE(Discard(*clone_, 2 * kRegion, 3 * kRegion).ok());
  EXPECT_EQ(dest_.forwarded(Op::kDiscard), discards + 1);
  EXPECT_FALSE(metadata_.map().IsSet(0));
  EXPECT_EQ(ReadRegion(0), SourceSlice(0, kRegion));
}

TEST_F(CloneFaultsTest, DiscardsFailInFail) {
  WritePartly(2);
  ASSERT_TRUE(Flush(*clone_).ok());
  metadata_.FailNextReload();
  WritePartly(9);
  FailNextDestinationFlush();
  ASSERT_FALSE(Flush(*clone_).ok());
  ASSERT_EQ(clone_->mode(), CloneMode::kFail);
  EXPECT_EQ(StatusToErrno(Discard(*clone_, 2 * kRegion, kRegion)), EIO);
  EXPECT_EQ(StatusToErrno(Discard(*clone_, 0, kRegion)), EIO);
}

TEST_F(CloneFaultsTest, DiscardOfHydratedRegionsOwesNoCommit) {
  ASSERT_TRUE(WriteAt(*clone_, 3 * kRegion, Bytes(512, std::byte{1}), kFua).ok());
  const uint64_t commits = metadata_.commits();
  const uint64_t discards = dest_.forwarded(Op::kDiscard);
  ASSERT_TRUE(Discard(*clone_, 3 * kRegion, kRegion).ok());
  EXPECT_EQ(dest_.forwarded(Op::kDiscard), discards + 1);
  ASSERT_TRUE(Flush(*clone_).ok());
  EXPECT_EQ(metadata_.commits(), commits) << "the map did not change";
}

}  // namespace
}  // namespace blkclone

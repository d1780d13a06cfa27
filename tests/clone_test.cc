// The clone engine, rule by rule (clone-semantics: geometry, reads and writes,
// discards, durability). Each test names the rule it would catch breaking.
#include "blkclone/clone.hpp"

#include <atomic>
#include <deque>
#include <random>
#include <utility>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "bounded_wait.hpp"
#include "controlled_copier.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::AwaitOrAbort;
using testing::BoundedThread;
using testing::RandomBytes;
using testing::WaitUntil;
using ::testing::HasSubstr;
using Bytes = std::vector<std::byte>;

constexpr uint64_t kRegion = 16 << 10;
constexpr uint64_t kSourceSize = 10 * kRegion + 4096;  // ten regions and a short one
constexpr uint64_t kRegions = 11;

// An asynchronous request whose completion the test can wait for.
struct PendingIo {
  Request request;
  Bytes buffer;
  internal::Mutex mu;
  internal::CondVar cv;
  int completions ABSL_GUARDED_BY(mu) = 0;
  absl::Status status ABSL_GUARDED_BY(mu);

  void Arm() {
    request.context = this;
    request.on_complete = [](Request& r, absl::Status s) {
      auto* self = static_cast<PendingIo*>(r.context);
      internal::MutexLock lock(self->mu);
      self->status = std::move(s);
      ++self->completions;
      self->cv.SignalAll();
    };
  }
  bool done() {
    internal::MutexLock lock(mu);
    return completions > 0;
  }
  absl::Status Wait() {
    internal::MutexLock lock(mu);
    AwaitOrAbort(cv, mu, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return completions > 0; },
                 "a request's completion");
    EXPECT_EQ(completions, 1);
    return status;
  }
};

class CloneTest : public ::testing::Test {
 protected:
  using Base = BufferedCopier<MemoryDevice, MemoryDevice>;
  using TestClone = Clone<MemoryDevice, MemoryDevice, ControlledCopier<Base>>;

  void SetUp() override { Open({}); }
  void TearDown() override {
    if (copier_ != nullptr) copier_->Release();  // a failed assertion may have left copies held
  }

  void Open(CloneOptions options, MemoryDevice::Options dest_options = {}) {
    clone_.reset();
    source_ = *MemoryDevice::Create({.size = kSourceSize, .caps = {}});
    source_data_ = RandomBytes(kSourceSize, 7);
    source_->Fill(0, source_data_);
    dest_options.size = kSourceSize + kRegion;
    dest_options.simulate_crashes = true;
    dest_ = *MemoryDevice::Create(dest_options);
    dest_junk_ = RandomBytes(kSourceSize + kRegion, 9);
    dest_->Fill(0, dest_junk_);
    geometry_ = *MakeCloneGeometry(source_->info(), dest_->info(), kRegion);
    metadata_ = std::make_unique<InMemoryMetadata>(geometry_);
    Reopen(options);
  }

  // A new clone over the same devices and the given metadata state.
  void Reopen(CloneOptions options, const std::vector<bool>* committed = nullptr) {
    clone_.reset();
    if (committed != nullptr) metadata_ = std::make_unique<InMemoryMetadata>(geometry_, *committed);
    base_copier_ = std::make_unique<Base>(*source_, *dest_, BufferedCopierOptions{});
    copier_ = std::make_unique<ControlledCopier<Base>>(*base_copier_);
    auto clone = TestClone::Create(*source_, *dest_, *copier_, *metadata_, options);
    ASSERT_TRUE(clone.ok()) << clone.status();
    clone_ = std::move(*clone);
  }

  Bytes Read(uint64_t offset, uint64_t length) {
    Bytes out(length);
    EXPECT_TRUE(ReadAt(*clone_, offset, out).ok());
    return out;
  }
  Bytes SourceSlice(uint64_t offset, uint64_t length) {
    return Bytes(source_data_.begin() + offset, source_data_.begin() + offset + length);
  }
  Bytes DestSlice(uint64_t offset, uint64_t length) {
    Bytes all = dest_->Contents();
    return Bytes(all.begin() + offset, all.begin() + offset + length);
  }
  bool Hydrated(uint64_t region) { return metadata_->map().IsSet(region); }

  std::unique_ptr<PendingIo> StartWrite(uint64_t offset, Bytes data, uint8_t flags = kNoFlags) {
    auto io = std::make_unique<PendingIo>();
    io->buffer = std::move(data);
    io->request = Request::Write(offset, io->buffer, flags);
    io->Arm();
    clone_->Submit(io->request);
    return io;
  }

  std::unique_ptr<MemoryDevice> source_, dest_;
  Bytes source_data_, dest_junk_;
  CloneGeometry geometry_;
  std::unique_ptr<InMemoryMetadata> metadata_;
  std::unique_ptr<Base> base_copier_;
  std::unique_ptr<ControlledCopier<Base>> copier_;
  std::unique_ptr<TestClone> clone_;
};

// ---- Devices and geometry ----

DeviceInfo Info(uint64_t size, uint32_t block = 512) {
  return DeviceInfo{.size = size, .logical_block_size = block, .caps = {}};
}

TEST(CheckRegionSizeTest, AcceptsEachPowerOfTwoFrom4KiBTo1GiB) {
  for (uint64_t bytes = kMinRegionSize; bytes <= kMaxRegionSize; bytes *= 2)
    EXPECT_TRUE(CheckRegionSize(bytes).ok()) << bytes;
}

TEST(CheckRegionSizeTest, SaysWhatIsWrongAndNothingElse) {
  const std::pair<uint64_t, const char*> cases[] = {
      {0, "not a power of two"},
      {3000, "not a power of two"},
      {3 * 4096, "not a power of two"},
      {kMaxRegionSize + 4096, "not a power of two"},
      {UINT64_MAX, "not a power of two"},
      {1, "less than 4 KiB"},
      {512, "less than 4 KiB"},
      {2048, "less than 4 KiB"},
      {kMaxRegionSize * 2, "more than 1 GiB"},
      {uint64_t{1} << 63, "more than 1 GiB"},
  };
  for (const auto& [bytes, message] : cases) {
    const absl::Status status = CheckRegionSize(bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bytes;
    EXPECT_EQ(status.message(), message) << bytes;
  }
}

TEST(CloneGeometryTest, RejectsEachBadGeometryWithItsReason) {
  const DeviceInfo source = Info(1 << 30), dest = Info(1 << 30);
  struct Case {
    DeviceInfo source, dest;
    uint64_t region;
    const char* words;
  } cases[] = {
      {source, dest, 3 * 4096, "not a power of two"},
      {source, dest, 2048, "region size 2048: less than 4 KiB"},
      {source, dest, uint64_t{2} << 30, "region size 2147483648: more than 1 GiB"},
      {Info(1 << 30, 8192), dest, 4096, "source's logical block size 8192"},
      {source, Info(1 << 30, 8192), 4096, "destination's logical block size 8192"},
      {source, Info((1 << 30) - 4096), 4096, "smaller than the source"},
      {Info(uint64_t{1} << 46), Info(uint64_t{1} << 46), 4096, "too many regions"},
  };
  for (const Case& c : cases) {
    auto geometry = MakeCloneGeometry(c.source, c.dest, c.region);
    EXPECT_EQ(geometry.status().code(), absl::StatusCode::kInvalidArgument) << c.words;
    EXPECT_THAT(geometry.status().message(), HasSubstr(c.words));
  }
  auto good = MakeCloneGeometry(Info(10 * 4096 + 512), dest, 4096);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good->region_count, 11u);  // the short last region counts
  EXPECT_TRUE(MakeCloneGeometry(Info(uint64_t{1} << 44),
                                Info(uint64_t{1} << 44), 4096)
                  .ok());  // exactly 2^32 regions
}

TEST_F(CloneTest, CreateRefusesMetadataOfAnotherGeometry) {
  CloneGeometry other = geometry_;
  other.source_size = kSourceSize - 4096;  // metadata made for a smaller source
  other.region_count = 10;
  InMemoryMetadata wrong(other);
  auto clone = TestClone::Create(*source_, *dest_, *copier_, wrong, {});
  EXPECT_EQ(clone.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(clone.status().message(), HasSubstr("does not match"));
}

TEST_F(CloneTest, PresentsTheSourceSizeAndTheStricterAlignment) {
  EXPECT_EQ(clone_->info().size, kSourceSize);
  EXPECT_TRUE(clone_->info().caps.discard);
  EXPECT_FALSE(clone_->info().caps.read_only);
  std::vector<std::byte> block(512);
  EXPECT_EQ(ReadAt(*clone_, kSourceSize, block).code(), absl::StatusCode::kOutOfRange);
}

// ---- Reads and writes ----

TEST_F(CloneTest, ReadOfAnUnhydratedRegionComesFromTheSourceAndCopiesNothing) {
  EXPECT_EQ(Read(kRegion + 512, 3 * kRegion), SourceSlice(kRegion + 512, 3 * kRegion));
  EXPECT_EQ(copier_->jobs(), 0);
  for (uint64_t r = 0; r < kRegions; ++r) EXPECT_FALSE(Hydrated(r));
  EXPECT_EQ(dest_->Contents(), dest_junk_);
}

TEST_F(CloneTest, PartialWriteHydratesItsRegionFirst) {
  Bytes patch = RandomBytes(1024, 3);
  ASSERT_TRUE(WriteAt(*clone_, 2 * kRegion + 4096, patch).ok());
  EXPECT_EQ(copier_->jobs(), 1);
  EXPECT_TRUE(Hydrated(2));
  Bytes expected = SourceSlice(2 * kRegion, kRegion);
  std::copy(patch.begin(), patch.end(), expected.begin() + 4096);
  EXPECT_EQ(Read(2 * kRegion, kRegion), expected);
  EXPECT_EQ(DestSlice(2 * kRegion, kRegion), expected);  // served from the destination
  EXPECT_FALSE(Hydrated(1));
  EXPECT_FALSE(Hydrated(3));
}

TEST_F(CloneTest, ReadOfAHydratedRegionComesFromTheDestination) {
  ASSERT_TRUE(WriteAt(*clone_, 0, RandomBytes(512, 4)).ok());
  Bytes marker(512, std::byte{0xee});
  dest_->Fill(8192, marker);  // behind the clone's back
  EXPECT_EQ(Read(8192, 512), marker);
}

TEST_F(CloneTest, WriteSpanningRegionsHydratesEachPartialOne) {
  Bytes data = RandomBytes(2 * kRegion, 5);
  ASSERT_TRUE(WriteAt(*clone_, 3 * kRegion + kRegion / 2, data).ok());
  // Regions 3 and 5 are partial (copied); region 4 is covered whole (no copy).
  EXPECT_EQ(copier_->jobs(), 2);
  EXPECT_TRUE(Hydrated(3) && Hydrated(4) && Hydrated(5));
  Bytes expected = SourceSlice(3 * kRegion, 3 * kRegion);
  std::copy(data.begin(), data.end(), expected.begin() + kRegion / 2);
  EXPECT_EQ(Read(3 * kRegion, 3 * kRegion), expected);
}

TEST_F(CloneTest, FullRegionOverwriteSkipsTheCopy) {
  Bytes data = RandomBytes(kRegion, 6);
  ASSERT_TRUE(WriteAt(*clone_, 7 * kRegion, data).ok());
  EXPECT_EQ(copier_->jobs(), 0);
  EXPECT_TRUE(Hydrated(7));
  EXPECT_EQ(Read(7 * kRegion, kRegion), data);
}

TEST_F(CloneTest, ShortLastRegionIsNeverAnOverwrite) {
  Bytes data = RandomBytes(4096, 8);
  ASSERT_TRUE(WriteAt(*clone_, 10 * kRegion, data).ok());
  EXPECT_EQ(copier_->jobs(), 1);
  EXPECT_TRUE(Hydrated(10));
  EXPECT_EQ(Read(10 * kRegion, 4096), data);
}

TEST_F(CloneTest, WritesToARegionBeingHydratedWaitBehindTheOneHydration) {
  copier_->Hold();
  std::vector<std::unique_ptr<PendingIo>> writes;
  for (int i = 0; i < 5; ++i)
    writes.push_back(StartWrite(kRegion + i * 1024, Bytes(512, std::byte(i + 1))));
  EXPECT_EQ(copier_->jobs(), 1);
  EXPECT_EQ(clone_->hydrating_regions(), 1u);
  for (auto& w : writes) EXPECT_FALSE(w->done());
  // A read of the region meanwhile is served from the source at once.
  EXPECT_EQ(Read(kRegion, kRegion), SourceSlice(kRegion, kRegion));
  copier_->Release();
  for (auto& w : writes) EXPECT_TRUE(w->Wait().ok());
  EXPECT_EQ(copier_->jobs(), 1);
  EXPECT_EQ(clone_->hydrating_regions(), 0u);
  Bytes region = Read(kRegion, kRegion);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(region[i * 1024], std::byte(i + 1));
  EXPECT_EQ(region[600], source_data_[kRegion + 600]);
}

TEST_F(CloneTest, WritesBehindAFullRegionOverwriteRunAfterIt) {
  copier_->Hold();
  Bytes whole = RandomBytes(kRegion, 10);
  auto first = StartWrite(4 * kRegion, whole);
  EXPECT_TRUE(first->Wait().ok());
  EXPECT_EQ(copier_->jobs(), 0);
  auto second = StartWrite(4 * kRegion, Bytes(512, std::byte{1}));
  EXPECT_TRUE(second->Wait().ok());
  EXPECT_EQ(Read(4 * kRegion, 512), Bytes(512, std::byte{1}));
  EXPECT_EQ(Read(4 * kRegion + 512, 512), Bytes(whole.begin() + 512, whole.begin() + 1024));
}

TEST_F(CloneTest, FailedCopyFailsEveryWaitingWriteAndLeavesTheRegionUnhydrated) {
  copier_->Hold();
  copier_->FailNext(1, absl::InternalError("copy failed: source EIO"));
  auto a = StartWrite(6 * kRegion, Bytes(512, std::byte{1}));
  auto b = StartWrite(6 * kRegion + 4096, Bytes(512, std::byte{2}));
  copier_->Release();
  for (auto* io : {a.get(), b.get()}) {
    absl::Status status = io->Wait();
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(status.message(), HasSubstr("copy failed"));
  }
  EXPECT_FALSE(Hydrated(6));
  EXPECT_EQ(Read(6 * kRegion, kRegion), SourceSlice(6 * kRegion, kRegion));
  // A later write retries the hydration and succeeds.
  ASSERT_TRUE(WriteAt(*clone_, 6 * kRegion, Bytes(512, std::byte{3})).ok());
  EXPECT_TRUE(Hydrated(6));
  EXPECT_EQ(copier_->jobs(), 2);
}

TEST_F(CloneTest, WriteZeroesHydratesLikeAWrite) {
  ASSERT_TRUE(WriteZeroes(*clone_, 5 * kRegion + 4096, 4096).ok());
  EXPECT_TRUE(Hydrated(5));
  Bytes expected = SourceSlice(5 * kRegion, kRegion);
  std::fill(expected.begin() + 4096, expected.begin() + 8192, std::byte{0});
  EXPECT_EQ(Read(5 * kRegion, kRegion), expected);
}

// ---- Discards ----

TEST_F(CloneTest, DiscardMarksOnlyTheRegionsItCoversWholeAndPassesThemDown) {
  ASSERT_TRUE(Discard(*clone_, kRegion / 2, 3 * kRegion).ok());  // covers regions 1 and 2
  EXPECT_FALSE(Hydrated(0));
  EXPECT_TRUE(Hydrated(1));
  EXPECT_TRUE(Hydrated(2));
  EXPECT_FALSE(Hydrated(3));
  EXPECT_EQ(copier_->jobs(), 0);
  EXPECT_EQ(DestSlice(kRegion, 2 * kRegion), Bytes(2 * kRegion));  // passed down: zeroes
  EXPECT_EQ(DestSlice(0, kRegion), Bytes(dest_junk_.begin(), dest_junk_.begin() + kRegion));
  EXPECT_EQ(DestSlice(3 * kRegion, kRegion),
            Bytes(dest_junk_.begin() + 3 * kRegion, dest_junk_.begin() + 4 * kRegion));
}

TEST_F(CloneTest, DiscardSmallerThanARegionDoesNothingAndSucceeds) {
  ASSERT_TRUE(Discard(*clone_, kRegion + 4096, kRegion - 4096).ok());
  for (uint64_t r = 0; r < kRegions; ++r) EXPECT_FALSE(Hydrated(r));
  EXPECT_EQ(dest_->Contents(), dest_junk_);
}

TEST_F(CloneTest, DiscardToTheEndCoversTheShortLastRegion) {
  ASSERT_TRUE(Discard(*clone_, 9 * kRegion, kSourceSize - 9 * kRegion).ok());
  EXPECT_TRUE(Hydrated(9));
  EXPECT_TRUE(Hydrated(10));
}

TEST_F(CloneTest, NoDiscardPassdownLeavesTheDestinationAlone) {
  Open({.discard_passdown = false});
  EXPECT_FALSE(clone_->discard_passdown());
  ASSERT_TRUE(Discard(*clone_, 0, 2 * kRegion).ok());
  EXPECT_TRUE(Hydrated(0) && Hydrated(1));
  EXPECT_EQ(dest_->Contents(), dest_junk_);
}

TEST_F(CloneTest, DestinationThatCannotDiscardTurnsPassdownOff) {
  Open({}, MemoryDevice::Options{.caps = {.discard = false, .write_zeroes = true}});
  EXPECT_FALSE(clone_->discard_passdown());
  ASSERT_TRUE(Discard(*clone_, 0, kRegion).ok());
  EXPECT_TRUE(Hydrated(0));
}

TEST_F(CloneTest, DiscardOutsideTheDeviceIsRejected) {
  EXPECT_EQ(Discard(*clone_, kSourceSize - 4096, 2 * kRegion).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(StatusToErrno(Discard(*clone_, kSourceSize, kRegion)), EINVAL);
  for (uint64_t r = 0; r < kRegions; ++r) EXPECT_FALSE(Hydrated(r));
}

TEST_F(CloneTest, DiscardWaitsForAHydrationInItsRange) {
  copier_->Hold();
  auto write = StartWrite(2 * kRegion, Bytes(512, std::byte{4}));
  auto discard = std::make_unique<PendingIo>();
  discard->request = Request::Discard(kRegion, 3 * kRegion);
  discard->Arm();
  clone_->Submit(discard->request);
  EXPECT_FALSE(discard->done());
  EXPECT_FALSE(Hydrated(1));
  copier_->Release();
  EXPECT_TRUE(write->Wait().ok());
  EXPECT_TRUE(discard->Wait().ok());
  EXPECT_TRUE(Hydrated(1) && Hydrated(2) && Hydrated(3));
}

// ---- Durability ----

TEST_F(CloneTest, FlushCommitsOnlyWhenTheMapChanged) {
  const uint64_t before = metadata_->commits();
  ASSERT_TRUE(Flush(*clone_).ok());
  EXPECT_EQ(metadata_->commits(), before) << "nothing changed, yet a commit ran";
  ASSERT_TRUE(WriteAt(*clone_, 3 * kRegion, Bytes(512, std::byte{1})).ok());
  EXPECT_FALSE(metadata_->CommittedRegions()[3]);
  ASSERT_TRUE(Flush(*clone_).ok());
  EXPECT_EQ(metadata_->commits(), before + 1);
  EXPECT_TRUE(metadata_->CommittedRegions()[3]);
}

TEST_F(CloneTest, FuaWriteCommitsWhenTheMapChanged) {
  ASSERT_TRUE(WriteAt(*clone_, 8 * kRegion, Bytes(512, std::byte{1}), kFua).ok());
  EXPECT_TRUE(metadata_->CommittedRegions()[8]);
  const uint64_t commits = metadata_->commits();
  ASSERT_TRUE(WriteAt(*clone_, 8 * kRegion, Bytes(512, std::byte{2}), kFua).ok());
  EXPECT_EQ(metadata_->commits(), commits) << "FUA to a hydrated region with a clean map";
}

TEST_F(CloneTest, PreflushWriteCommitsEarlierHydrations) {
  ASSERT_TRUE(WriteAt(*clone_, 0, Bytes(512, std::byte{1})).ok());
  ASSERT_TRUE(WriteAt(*clone_, 5 * kRegion, Bytes(512, std::byte{2}), kPreflush).ok());
  EXPECT_TRUE(metadata_->CommittedRegions()[0]);
  EXPECT_EQ(Read(5 * kRegion, 512), Bytes(512, std::byte{2}));
}

TEST_F(CloneTest, DiscardIsCommittedByTheNextFlush) {
  ASSERT_TRUE(Discard(*clone_, 0, kRegion).ok());
  ASSERT_TRUE(Flush(*clone_).ok());
  EXPECT_TRUE(metadata_->CommittedRegions()[0]);
}

TEST_F(CloneTest, PeriodicCommitPersistsChangesWithoutAFlush) {
  Reopen({.commit_interval = std::chrono::milliseconds(10)});
  ASSERT_TRUE(WriteAt(*clone_, kRegion, Bytes(512, std::byte{1})).ok());
  EXPECT_TRUE(WaitUntil([&]() -> bool { return metadata_->CommittedRegions()[1]; }));
}

TEST_F(CloneTest, FlushedWritesSurviveACrashAndUnflushedHydrationsAreNotCommitted) {
  Bytes flushed = RandomBytes(4096, 11), later = RandomBytes(4096, 12);
  ASSERT_TRUE(WriteAt(*clone_, 2 * kRegion, flushed).ok());
  ASSERT_TRUE(Flush(*clone_).ok());
  ASSERT_TRUE(WriteAt(*clone_, 6 * kRegion, later).ok());
  std::vector<bool> committed = metadata_->CommittedRegions();
  EXPECT_TRUE(committed[2]);
  EXPECT_FALSE(committed[6]);
  dest_->SimulateCrash();
  Reopen({}, &committed);
  EXPECT_EQ(Read(2 * kRegion, 4096), flushed);                         // I3
  EXPECT_EQ(Read(6 * kRegion, kRegion), SourceSlice(6 * kRegion, kRegion));  // I2: source data
}

TEST_F(CloneTest, CloseCommitsAndLaterRequestsFail) {
  ASSERT_TRUE(WriteAt(*clone_, 9 * kRegion, Bytes(512, std::byte{1})).ok());
  ASSERT_TRUE(clone_->Close().ok());
  EXPECT_TRUE(metadata_->CommittedRegions()[9]);
  Bytes block(512);
  absl::Status late = ReadAt(*clone_, 0, block);
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.message(), HasSubstr("closed"));
}

TEST_F(CloneTest, CloseWaitsForRequestsInFlight) {
  // No periodic commit: nothing but Close takes the clone's locks meanwhile.
  Reopen({.commit_interval = std::chrono::hours(1)});
  ASSERT_TRUE(WriteAt(*clone_, 3 * kRegion, Bytes(512, std::byte{2})).ok());  // to commit
  const uint64_t commits = metadata_->commits();
  copier_->Hold();
  auto write = StartWrite(kRegion, Bytes(512, std::byte{1}));
  ASSERT_EQ(copier_->held(), 1u);
  BoundedThread closer([&] { EXPECT_TRUE(clone_->Close().ok()); });
  // Close has begun once new requests fail, and is blocked once its thread
  // sleeps: before its commit it has nothing else to sleep on.
  ASSERT_TRUE(WaitUntil([&] {
    Bytes block(512);
    return ReadAt(*clone_, 0, block).code() == absl::StatusCode::kFailedPrecondition;
  }));
  ASSERT_TRUE(WaitUntil([&] { return closer.Sleeping() || closer.finished(); }));
  EXPECT_FALSE(closer.finished()) << "Close returned with a write in flight";
  EXPECT_EQ(metadata_->commits(), commits) << "Close committed with a write in flight";
  EXPECT_FALSE(write->done());
  copier_->Release();
  closer.Join();
  EXPECT_TRUE(write->Wait().ok());
  EXPECT_TRUE(metadata_->CommittedRegions()[1]);
  EXPECT_TRUE(metadata_->CommittedRegions()[3]);
}

}  // namespace
}  // namespace blkclone

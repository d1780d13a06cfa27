// CloneSession: its life cycle (create, take over, open, hydrate, finalize,
// close) and every way of opening one failing cleanly.
#include "blkclone/clone_session.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "blkclone/sync_io.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "bounded_wait.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using ::blkclone::testing::BoundedThread;
using ::blkclone::testing::RandomBytes;
using ::blkclone::testing::WaitUntil;
using ::testing::HasSubstr;

constexpr uint64_t kSize = 1 << 20;
constexpr uint64_t kRegion = 64 << 10;

std::unique_ptr<MemoryDevice> Memory(uint64_t size, uint32_t block_size = 512) {
  return *MemoryDevice::Create({.size = size, .logical_block_size = block_size});
}

// The three devices, owned by the test so that it can look at them after a
// session has gone; sessions borrow them.
struct Devices {
  std::unique_ptr<MemoryDevice> source = Memory(kSize);
  std::unique_ptr<MemoryDevice> dest = Memory(kSize);
  std::unique_ptr<MemoryDevice> meta = Memory(PersistentMetadata::RequiredSize(
      {.source_size = kSize, .dest_size = kSize, .region_size = kRegion,
       .region_count = kSize / kRegion}));
  std::vector<std::byte> source_bytes = RandomBytes(kSize, 7);

  Devices() { source->Fill(0, source_bytes); }
  SessionDevices Borrowed() {
    return {AnyBlockDevice::Borrow(*source), AnyBlockDevice::Borrow(*dest),
            AnyBlockDevice::Borrow(*meta)};
  }
  // The geometry the metadata records.
  CloneGeometry Recorded() {
    AnyBlockDevice view = AnyBlockDevice::Borrow(*meta);
    return PersistentMetadata::ReadHeader(view)->geometry;
  }
  bool MetadataBlank() const {
    const std::vector<std::byte> bytes = meta->Contents();
    return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
  }
};

// Background hydration off: tests start it when they mean to.
SessionOptions Quiet() { return {.hydration = {.start_enabled = false}}; }

std::vector<std::byte> ReadAll(SessionClone& clone) {
  std::vector<std::byte> bytes(kSize);
  EXPECT_TRUE(ReadAt(clone, 0, bytes).ok());
  return bytes;
}

TEST(CloneSessionTest, CreateFormatsBlankMetadataAndOpenResumesIt) {
  Devices d;
  const std::vector<std::byte> patch = RandomBytes(4096, 9);
  {
    auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
    ASSERT_TRUE(session.ok()) << session.status();
    EXPECT_EQ((*session)->origin(), MetadataOrigin::kFormatted);
    ASSERT_TRUE(WriteAt((*session)->clone(), 3 * kRegion + 512, patch).ok());
    ASSERT_TRUE((*session)->Close().ok());
  }
  auto session = CloneSession::Open(d.Borrowed(), Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->hydrated_bytes_at_open(), kRegion);
  std::vector<std::byte> expected = d.source_bytes;
  std::copy(patch.begin(), patch.end(), expected.begin() + 3 * kRegion + 512);
  EXPECT_EQ(ReadAll((*session)->clone()), expected);
}

TEST(CloneSessionTest, OpenNeverFormats) {
  Devices d;
  auto session = CloneSession::Open(d.Borrowed(), Quiet());
  ASSERT_EQ(session.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(session.status().message(), HasSubstr("metadata device: blank"));
  EXPECT_TRUE(d.MetadataBlank());
}

// Creates a clone with `regions` hydrated by writes, then closes it.
void CreateWithWrites(Devices& d, uint64_t regions) {
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  for (uint64_t r = 0; r < regions; ++r)
    ASSERT_TRUE(WriteAt((*session)->clone(), r * kRegion, RandomBytes(kRegion, 10 + r)).ok());
  ASSERT_TRUE((*session)->Close().ok());
}

TEST(CloneSessionTest, CreateTakesOverMetadataThatCanOnlyBeThisClones) {
  Devices d;
  CreateWithWrites(d, 2);
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->origin(), MetadataOrigin::kTakenOver);
  EXPECT_EQ((*session)->metadata().map().CountSet(), 2u);
}

// The rule under Open: PersistentMetadata formats only when asked to.
TEST(CloneSessionTest, MetadataOpenedWithDefaultOptionsIsNeverFormatted) {
  Devices d;
  auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*d.meta),
                                           {.source_size = kSize, .dest_size = kSize,
                                            .region_size = kRegion,
                                            .region_count = kSize / kRegion});
  EXPECT_EQ(metadata.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(d.MetadataBlank());
}

TEST(CloneSessionTest, CreateRefusesAnotherClonesMetadata) {
  Devices d;
  CreateWithWrites(d, 1);
  const std::vector<std::byte> before = d.meta->Contents();
  auto session = CloneSession::Create(d.Borrowed(), 2 * kRegion, Quiet());
  ASSERT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(session.status().message(),
              HasSubstr("metadata device: holds the metadata of another clone"));
  EXPECT_EQ(d.meta->Contents(), before);
}

TEST(CloneSessionTest, CreateRefusesATooSmallMetadataDevice) {
  Devices d;
  d.meta = Memory(4096);
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(session.status().message(), HasSubstr("metadata device: 4096 bytes is too small"));
  EXPECT_TRUE(d.MetadataBlank());
}

TEST(CloneSessionTest, CreateRefusesADestinationSmallerThanTheSource) {
  Devices d;
  d.dest = Memory(kSize / 2);
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(session.status().message(), HasSubstr("is smaller than the source"));
  EXPECT_TRUE(d.MetadataBlank());
}

TEST(CloneSessionTest, OpenRefusesDevicesWhoseSizesChanged) {
  {
    Devices d;
    CreateWithWrites(d, 0);
    d.dest = Memory(2 * kSize);
    auto session = CloneSession::Open(d.Borrowed(), Quiet());
    ASSERT_EQ(session.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(session.status().message(), HasSubstr("destination: 2097152 bytes, not the"));
  }
  {
    Devices d;
    CreateWithWrites(d, 0);
    d.source = Memory(kSize / 2);
    auto session = CloneSession::Open(d.Borrowed(), Quiet());
    ASSERT_EQ(session.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(session.status().message(), HasSubstr("source: 524288 bytes, shorter than"));
  }
}

// The engine refuses the devices only once the session's parts are built: they
// are torn down again (ASan and TSan builds check how).
TEST(CloneSessionTest, OpenTearsDownWhenTheEngineRefusesTheDevices) {
  Devices d;
  CreateWithWrites(d, 0);
  d.dest = Memory(kSize, 128 << 10);  // a block larger than a region
  auto session = CloneSession::Open(d.Borrowed(), Quiet());
  ASSERT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(session.status().message(), HasSubstr("logical block size"));
}

TEST(CloneSessionTest, OpenFailsCleanlyWhenTheMetadataDeviceCannotBeRead) {
  Devices d;
  CreateWithWrites(d, 1);
  FaultInjectingDevice<MemoryDevice> faulty(*d.meta);
  faulty.AddRule({.ops = {Op::kRead}});
  auto session = CloneSession::Open(
      {AnyBlockDevice::Borrow(*d.source), AnyBlockDevice::Borrow(*d.dest),
       AnyBlockDevice::Borrow(faulty)},
      Quiet());
  ASSERT_FALSE(session.ok());
  EXPECT_THAT(session.status().message(), HasSubstr("metadata device: "));
}

TEST(CloneSessionTest, CreateFailsCleanlyWhenFormattingFails) {
  Devices d;
  FaultInjectingDevice<MemoryDevice> faulty(*d.meta);
  faulty.AddRule({.ops = {Op::kWrite}});
  auto session = CloneSession::Create(
      {AnyBlockDevice::Borrow(*d.source), AnyBlockDevice::Borrow(*d.dest),
       AnyBlockDevice::Borrow(faulty)},
      kRegion, Quiet());
  ASSERT_FALSE(session.ok());
  EXPECT_THAT(session.status().message(), HasSubstr("metadata device: "));
  EXPECT_TRUE(d.MetadataBlank());
  faulty.ClearRules();  // the same devices then create the clone
  EXPECT_TRUE(CloneSession::Create({AnyBlockDevice::Borrow(*d.source),
                                    AnyBlockDevice::Borrow(*d.dest),
                                    AnyBlockDevice::Borrow(faulty)},
                                   kRegion, Quiet())
                  .ok());
}

// A header that reads well over metadata that does not: the open fails after
// the header was accepted, and nothing is left running.
TEST(CloneSessionTest, OpenFailsCleanlyWhenTheCommittedMapCannotBeRead) {
  Devices d;
  CreateWithWrites(d, 2);
  FaultInjectingDevice<MemoryDevice> faulty(*d.meta);
  faulty.AddRule({.ops = {Op::kRead}, .skip = 4});  // the superblocks read, the bitmap not
  auto session = CloneSession::Open({AnyBlockDevice::Borrow(*d.source),
                                     AnyBlockDevice::Borrow(*d.dest),
                                     AnyBlockDevice::Borrow(faulty)},
                                    Quiet());
  ASSERT_FALSE(session.ok());
  EXPECT_GT(faulty.counters().injected[Op::kRead], 0u);
  EXPECT_THAT(session.status().message(), HasSubstr("metadata device: "));
  faulty.ClearRules();
  auto reopened = CloneSession::Open({AnyBlockDevice::Borrow(*d.source),
                                      AnyBlockDevice::Borrow(*d.dest),
                                      AnyBlockDevice::Borrow(faulty)},
                                     Quiet());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->metadata().map().CountSet(), 2u);
}

TEST(CloneSessionTest, FinalizeRefusesAnIncompleteCloneAndChangesNothing) {
  Devices d;
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  const absl::Status refused = (*session)->Finalize();
  ASSERT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("not fully hydrated: 16 of 16 regions remain"));
  EXPECT_FALSE((*session)->metadata().finished());
  // The session goes on.
  EXPECT_TRUE(WriteAt((*session)->clone(), 0, RandomBytes(4096, 3)).ok());
}

TEST(CloneSessionTest, HydrateAllThenFinalizeHandsTheDestinationOver) {
  Devices d;
  {
    auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->HydrateAll().ok());
    EXPECT_EQ((*session)->progress().hydrated_bytes, kSize);
    ASSERT_TRUE((*session)->Finalize().ok());
    EXPECT_TRUE((*session)->metadata().finished());
    // Closed: the clone takes no more requests.
    EXPECT_FALSE(WriteAt((*session)->clone(), 0, RandomBytes(4096, 3)).ok());
  }
  EXPECT_EQ(d.dest->Contents(), d.source_bytes);
  auto reopened = CloneSession::Open(d.Borrowed(), Quiet());
  ASSERT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reopened.status().message(), HasSubstr("holds a finished clone"));
  auto recreated = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_EQ(recreated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(recreated.status().message(), HasSubstr("holds a finished clone"));
}

// Below the session, the engine itself refuses to run a finished clone.
TEST(CloneSessionTest, TheEngineRefusesFinishedMetadata) {
  Devices d;
  {
    auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE((*session)->HydrateAll().ok());
    ASSERT_TRUE((*session)->Finalize().ok());
  }
  auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*d.meta), d.Recorded());
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  BufferedCopier<MemoryDevice, MemoryDevice> copier(*d.source, *d.dest);
  auto clone = Clone<MemoryDevice, MemoryDevice, decltype(copier)>::Create(
      *d.source, *d.dest, copier, **metadata, {});
  ASSERT_EQ(clone.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(clone.status().message(), HasSubstr("finished clone"));
}

// A destination flush that fails leaves the clone unfinished.
TEST(CloneSessionTest, FinalizeDoesNotRecordWhatTheDestinationDidNotMakeDurable) {
  Devices d;
  CreateWithWrites(d, kSize / kRegion);
  FaultInjectingDevice<MemoryDevice> faulty(*d.dest);
  auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*d.meta),
                                           d.Recorded());
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  faulty.AddRule({.ops = {Op::kFlush}, .count = 1});
  AnyBlockDevice dest = AnyBlockDevice::Borrow(faulty);
  EXPECT_FALSE(CloneSession::Finalize(**metadata, dest).ok());
  EXPECT_FALSE((*metadata)->finished());
  EXPECT_TRUE(CloneSession::Finalize(**metadata, dest).ok());
  EXPECT_TRUE((*metadata)->finished());
}

TEST(CloneSessionTest, HydrateAllSaysWhyCopyFailuresStoppedIt) {
  Devices d;
  FaultInjectingDevice<MemoryDevice> faulty(*d.source);
  faulty.AddRule({.ops = {Op::kRead}, .range = ByteRange{.offset = 5 * kRegion, .length = 1}});
  SessionOptions options = Quiet();
  options.hydration.max_consecutive_failures = 2;
  options.hydration.first_retry_delay = std::chrono::milliseconds(1);
  auto session = CloneSession::Create(
      {AnyBlockDevice::Borrow(faulty), AnyBlockDevice::Borrow(*d.dest),
       AnyBlockDevice::Borrow(*d.meta)},
      kRegion, options);
  ASSERT_TRUE(session.ok()) << session.status();
  const absl::Status status = (*session)->HydrateAll();
  ASSERT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("hydration stopped after repeated copy failures"));
}

TEST(CloneSessionTest, HydrateAllSaysWhyAFailedCommitStoppedIt) {
  Devices d;
  FaultInjectingDevice<MemoryDevice> faulty(*d.meta);
  auto session = CloneSession::Create(
      {AnyBlockDevice::Borrow(*d.source), AnyBlockDevice::Borrow(*d.dest),
       AnyBlockDevice::Borrow(faulty)},
      kRegion, Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  faulty.AddRule({.ops = {Op::kWrite}});
  ASSERT_TRUE(WriteAt((*session)->clone(), 0, RandomBytes(kRegion, 4)).ok());
  EXPECT_FALSE(Flush((*session)->clone()).ok());  // the commit fails: the clone goes ro
  const absl::Status status = (*session)->HydrateAll();
  ASSERT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("the metadata mode is ro after a failed commit"));
  EXPECT_FALSE((*session)->ModeCause().ok());
}

// A report returning false ends the wait; hydration goes on meanwhile.
TEST(CloneSessionTest, HydrateAllReportsBytesAsCopiesAdvanceWithinARegion) {
  Devices d;
  SessionOptions options = Quiet();
  options.rate_limit = 256 << 10;  // a region takes a quarter of a second
  auto session = CloneSession::Create(d.Borrowed(), kRegion, options);
  ASSERT_TRUE(session.ok()) << session.status();
  bool saw_part_of_a_region = false;
  uint64_t last = 0;
  const absl::Status status = (*session)->HydrateAll(
      [&](const HydrationProgress& now) {
        EXPECT_GE(now.hydrated_bytes, last);  // never goes back
        last = now.hydrated_bytes;
        saw_part_of_a_region |= now.hydrated_bytes % kRegion != 0;
        return !saw_part_of_a_region;
      },
      std::chrono::milliseconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(saw_part_of_a_region);
  EXPECT_TRUE((*session)->progress().enabled);
}

// At 4 KiB/s the copies in flight would take minutes to end at that rate;
// Close lifts it (the bounded thread aborts the test if Close hangs).
TEST(CloneSessionTest, CloseIsPromptWhateverTheRateLimit) {
  Devices d;
  SessionOptions options = {.hydration = {.threshold = 8, .batch_size = 4},
                            .rate_limit = 4096};
  auto session = CloneSession::Create(d.Borrowed(), kRegion, options);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(WaitUntil([&] { return (*session)->clone().hydrating_regions() > 0; }));
  BoundedThread closer([&] { EXPECT_TRUE((*session)->Close().ok()); });
  closer.Join();
  EXPECT_LT((*session)->progress().hydrated_regions, kSize / kRegion);
}

TEST(CloneSessionTest, MessagesChangeTheRunningClone) {
  Devices d;
  auto session = CloneSession::Create(d.Borrowed(), kRegion, Quiet());
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_FALSE((*session)->Status().hydration_enabled);
  (*session)->Apply(*ParseMessage("enable_hydration"));
  (*session)->Apply(*ParseMessage("hydration_threshold 7"));
  const CloneStatus status = (*session)->Status();
  EXPECT_TRUE(status.hydration_enabled);
  EXPECT_EQ(status.hydration_threshold, 7u);
}

TEST(CloneSessionTest, OfflineStatusIsTheCommittedState) {
  Devices d;
  CreateWithWrites(d, 3);
  auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*d.meta),
                                           d.Recorded(),
                                           {.read_only = true});
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  const CloneStatus status = CloneSession::OfflineStatus(
      **metadata, {.start_enabled = false, .threshold = 2, .batch_size = 5}, true);
  EXPECT_FALSE(status.active);
  EXPECT_EQ(status.hydrated_regions, 3u);
  EXPECT_EQ(status.total_regions, kSize / kRegion);
  EXPECT_EQ(status.hydration_batch_size, 5u);
}

}  // namespace
}  // namespace blkclone

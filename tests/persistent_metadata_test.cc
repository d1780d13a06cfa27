// PersistentMetadata: format and reopen, open errors, seal semantics, failed
// commits, I/O per commit, crashes at every point of a commit and torn writes,
// bit flips in every block type, reloads, a model-based property, and scale.
#include "blkclone/persistent_metadata.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/file_device.hpp"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/metadata_check.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "bounded_wait.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metadata_fixtures.hpp"
#include "rapidcheck.h"
#include "rapidcheck/gtest.h"

namespace blkclone {
namespace {

using ::testing::AllOf;
using testing::BoundedThread;
using ::testing::HasSubstr;
using ::testing::Not;

using testing::Commit;
using testing::DeviceWith;
using testing::ForEachCrashImage;
using testing::ForEachTornImage;
using testing::GeometryOf;
using testing::HeaderOf;
using testing::kR;
using testing::NewDevice;
using testing::OpenOn;
using testing::WordsOf;

// Four bitmap blocks, the last one partial.
const CloneGeometry kGeometry = GeometryOf(3 * kR + 1000);

std::vector<bool> BitsOf(const RegionMap& map) {
  std::vector<bool> bits(map.size());
  for (uint64_t r = 0; r < bits.size(); ++r) bits[r] = map.IsSet(r);
  return bits;
}

void SetBits(std::vector<bool>& bits, uint64_t first, uint64_t count) {
  for (uint64_t r = first; r < first + count && r < bits.size(); ++r) bits[r] = true;
}

void FlipBit(MemoryDevice& device, uint64_t offset, uint8_t mask = 0x10) {
  std::vector<std::byte> bytes = device.Contents();
  bytes[offset] ^= std::byte{mask};
  device.Fill(offset, std::span(bytes).subspan(offset, 1));
}

void WriteSuperblockRaw(MemoryDevice& device, int slot, const StoredHeader& header) {
  std::vector<std::byte> block(kMetadataBlockSize);
  internal::EncodeSuperblock(header, std::span<std::byte, kMetadataBlockSize>(block));
  device.Fill(slot * kMetadataBlockSize, block);
}

// The slot of bitmap block `block` that holds its committed version.
int CommittedSlot(MemoryDevice& device, uint64_t block) {
  const StoredHeader header = HeaderOf(device);
  const std::vector<std::byte> bytes = device.Contents();
  std::vector<internal::BitmapSlot> kinds;
  for (int s = 0; s < header.layout.slots(); ++s) {
    const auto raw = internal::ConstBlock(
        bytes.data() + (header.layout.slot_start[s] + block) * kMetadataBlockSize,
        kMetadataBlockSize);
    kinds.push_back(internal::InspectBitmapSlot(raw, header.uuid, block));
  }
  return internal::ChooseBitmapSlot(kinds, header.generation).slot;
}

// The other copy of the version in `slot` (format 2).
int Twin(int slot) { return slot ^ 1; }

uint64_t SlotOffset(MemoryDevice& device, uint64_t block, int slot) {
  return (HeaderOf(device).layout.slot_start[slot] + block) * kMetadataBlockSize;
}

// ---- The format's building blocks.

std::vector<std::byte> BytesOf(absl::string_view text) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

TEST(MetadataFormatTest, Crc32cMatchesKnownVectors) {
  std::vector<std::byte> ascending(32);
  for (size_t i = 0; i < ascending.size(); ++i) ascending[i] = std::byte(i);
  const std::vector<std::pair<std::vector<std::byte>, uint32_t>> vectors = {
      {BytesOf("123456789"), 0xE3069283},
      {{}, 0},
      {std::vector<std::byte>(32, std::byte{0}), 0x8A9136AA},  // RFC 3720 B.4
      {std::vector<std::byte>(32, std::byte{0xff}), 0x62A8AB43},
      {ascending, 0x46DD794E}};
  for (const auto& [data, crc] : vectors) {
    EXPECT_EQ(internal::Crc32c(data), crc);
    EXPECT_EQ(internal::Crc32cPortable(data), crc);
  }
}

TEST(MetadataFormatTest, Crc32cImplementationsAgreeOnEveryLengthAndAlignment) {
  std::vector<std::byte> data(300);
  std::mt19937 rng(7);
  for (std::byte& b : data) b = std::byte(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; offset + length <= data.size(); length += 13) {
      const auto span = std::span(data).subspan(offset, length);
      EXPECT_EQ(internal::Crc32c(span), internal::Crc32cPortable(span));
    }
  }
}

TEST(MetadataFormatTest, SuperblockRoundTripsAndRejectsImpossibleValues) {
  const uint64_t device_size = PersistentMetadata::RequiredSize(kGeometry);
  StoredHeader header{.format_version = internal::kFormatVersion,
                      .uuid = Uuid::Random(),
                      .generation = 77,
                      .geometry = kGeometry,
                      .compat_features = kFeatureFinished,
                      .needs_check = true,
                      .layout = internal::StandardLayout(kGeometry.region_count),
                      .superblock_slot = 1};
  std::vector<std::byte> raw(kMetadataBlockSize);
  const auto block = std::span<std::byte, kMetadataBlockSize>(raw);
  internal::EncodeSuperblock(header, block);
  auto decoded = internal::DecodeSuperblock(block, 1, device_size);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->uuid, header.uuid);
  EXPECT_EQ(decoded->generation, 77u);
  EXPECT_EQ(decoded->geometry, kGeometry);
  EXPECT_EQ(decoded->layout, header.layout);
  EXPECT_TRUE(decoded->needs_check && decoded->finished());
  EXPECT_EQ(decoded->superblock_slot, 1);
  // Valid checksums over impossible values: each is refused, naming the rule.
  const std::vector<std::pair<std::function<void(StoredHeader&)>, std::string>> cases = {
      {[](StoredHeader& h) { h.geometry.region_size = 5000; }, "power of two"},
      {[](StoredHeader& h) { h.geometry.dest_size = 4096; }, "smaller than the source"},
      {[](StoredHeader& h) { h.geometry.region_count = 1; }, "region count"},
      {[](StoredHeader& h) { h.layout.bitmap_blocks = 1; }, "bitmap blocks"},
      {[](StoredHeader& h) { h.layout.slot_start[1] = 1u << 30; }, "does not fit"},
      {[](StoredHeader& h) { h.layout.slot_start[1] = ~uint64_t{0}; }, "does not fit"},
      {[](StoredHeader& h) { h.layout.slot_start[0] = 0; }, "does not fit"},
      {[](StoredHeader& h) { h.layout.slot_start[1] = h.layout.slot_start[0] + 1; }, "overlap"},
      {[](StoredHeader& h) { h.layout.slot_start[3] = 3; }, "does not fit"},  // a superblock
      {[](StoredHeader& h) { h.layout.slot_start[3] = h.layout.slot_start[0]; }, "overlap"}};
  for (const auto& [mutate, message] : cases) {
    StoredHeader bad = header;
    mutate(bad);
    internal::EncodeSuperblock(bad, block);
    const auto status = internal::DecodeSuperblock(block, 0, device_size).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << message;
    EXPECT_THAT(status.message(), HasSubstr(message));
  }
}

TEST(MetadataFormatTest, BitmapSlotChoiceFollowsTheGenerationRules) {
  using internal::BitmapSlot;
  using internal::SlotKind;
  const BitmapSlot blank{};
  const BitmapSlot foreign{.kind = SlotKind::kForeign};
  auto valid = [](uint64_t g) { return BitmapSlot{.kind = SlotKind::kValid, .generation = g}; };
  auto damaged = [](uint64_t g) { return BitmapSlot{.kind = SlotKind::kDamaged, .generation = g}; };
  struct Case {
    std::vector<BitmapSlot> slots;  // format 1: A, B; format 2: A1, A2, B1, B2
    int slot;
    bool interrupted;
    int suspect_slot;
    bool damage;
    int write_pair;
  };
  constexpr int kNo = internal::kNoSlot;
  const uint64_t g = 10;
  const std::vector<Case> cases = {
      // Format 1.
      Case{{blank, blank}, kNo, false, kNo, false, 1},        // never written
      Case{{valid(3), valid(7)}, 1, false, kNo, false, 0},    // the newer committed copy
      Case{{valid(7), valid(11)}, 0, true, kNo, false, 1},    // B is an interrupted commit
      Case{{blank, valid(11)}, kNo, true, kNo, false, 1},     // first write interrupted
      Case{{damaged(11), valid(7)}, 1, true, kNo, false, 0},  // torn interrupted write
      Case{{damaged(5), valid(7)}, 1, false, kNo, false, 0},  // torn over the older copy
      Case{{damaged(9), valid(7)}, 1, false, kNo, true, 0},   // latest committed copy damaged
      Case{{damaged(9), blank}, kNo, false, kNo, true, 1},    // only copy damaged
      Case{{foreign, valid(7)}, 1, false, kNo, true, 0},      // garbage of unknown age
      Case{{valid(11), valid(12)}, kNo, true, kNo, true, 1},  // superblock lost a commit
      // Format 2: one suspect slot is repaired from its twin, two are damage.
      Case{{blank, blank, blank, blank}, kNo, false, kNo, false, 1},
      Case{{valid(7), valid(7), valid(3), valid(3)}, 0, false, kNo, false, 1},
      Case{{valid(3), valid(3), valid(7), valid(7)}, 2, false, kNo, false, 0},
      Case{{valid(7), damaged(7), valid(3), valid(3)}, 0, false, 1, false, 1},
      Case{{foreign, valid(7), valid(3), valid(3)}, 1, false, 0, false, 1},
      Case{{valid(7), blank, blank, blank}, 0, false, 1, false, 1},
      Case{{valid(7), damaged(9), valid(3), valid(3)}, 0, false, 1, false, 1},
      Case{{valid(7), valid(7), foreign, valid(3)}, 0, false, 2, false, 1},
      Case{{blank, foreign, blank, blank}, kNo, false, 1, false, 1},
      Case{{damaged(9), valid(3), valid(7), valid(7)}, 2, false, 0, false, 0},
      Case{{damaged(9), damaged(9), valid(7), valid(7)}, 2, false, kNo, true, 0},
      Case{{valid(7), foreign, foreign, valid(3)}, 0, false, kNo, true, 1},
      Case{{valid(11), valid(11), valid(7), valid(7)}, 2, true, kNo, false, 0},
      Case{{valid(11), damaged(11), valid(7), valid(7)}, 2, true, kNo, false, 0},
      Case{{valid(11), valid(3), valid(7), valid(7)}, 2, true, kNo, false, 0},
      Case{{valid(11), blank, blank, blank}, kNo, true, kNo, false, 0},
      Case{{valid(11), blank, valid(12), blank}, kNo, true, kNo, true, 1},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i));
    const Case& c = cases[i];
    const internal::BitmapChoice choice = internal::ChooseBitmapSlot(c.slots, g);
    EXPECT_EQ(choice.slot, c.slot);
    EXPECT_EQ(choice.interrupted, c.interrupted);
    EXPECT_EQ(choice.suspect_slot, c.suspect_slot);
    EXPECT_EQ(!choice.damage.empty(), c.damage);
    EXPECT_EQ(choice.write_pair, c.write_pair);
  }
}

// ---- Opening and committing.

TEST(PersistentMetadataTest, FormatsABlankDeviceAndReopensWithOnlyCommittedMarks) {
  auto device = NewDevice(kGeometry);
  Uuid uuid;
  {
    auto meta = OpenOn(*device, kGeometry);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ((*meta)->generation(), 0u);
    Commit(**meta, {{5, 10}, {2 * kR + 3, 1}});
    (*meta)->MarkHydrated(100, 5);  // never sealed nor committed
    EXPECT_EQ((*meta)->generation(), 1u);
    uuid = (*meta)->uuid();
  }
  auto meta = OpenOn(*device, kGeometry, {.format_if_blank = false});
  ASSERT_TRUE(meta.ok()) << meta.status();
  std::vector<bool> expected(kGeometry.region_count);
  SetBits(expected, 5, 10);
  SetBits(expected, 2 * kR + 3, 1);
  EXPECT_EQ(BitsOf((*meta)->map()), expected);
  EXPECT_EQ((*meta)->uuid(), uuid);
  EXPECT_EQ((*meta)->generation(), 1u);
  EXPECT_EQ((*meta)->geometry(), kGeometry);
}

TEST(PersistentMetadataTest, FormatGivesEachMetadataItsOwnUuid) {
  auto a = NewDevice(kGeometry);
  auto b = NewDevice(kGeometry);
  auto meta_a = OpenOn(*a, kGeometry);
  auto meta_b = OpenOn(*b, kGeometry);
  ASSERT_TRUE(meta_a.ok() && meta_b.ok());
  EXPECT_NE((*meta_a)->uuid(), (*meta_b)->uuid());
  EXPECT_EQ((*meta_a)->uuid().ToString().size(), 36u);
  EXPECT_EQ((*meta_a)->uuid().ToString()[14], '4');  // version 4
}

TEST(PersistentMetadataTest, ReadHeaderReportsTheStoredGeometryAndUuid) {
  auto device = NewDevice(kGeometry);
  const Uuid uuid{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
  ASSERT_TRUE(OpenOn(*device, kGeometry, {.format_if_blank = true, .format_uuid = uuid}).ok());
  const StoredHeader header = HeaderOf(*device);
  EXPECT_EQ(header.geometry, kGeometry);
  EXPECT_EQ(header.uuid, uuid);
  EXPECT_EQ(header.uuid.ToString(), "01020304-0506-0708-090a-0b0c0d0e0f10");
  EXPECT_EQ(header.format_version, internal::kFormatVersion);
  EXPECT_EQ(header.layout, internal::StandardLayout(kGeometry.region_count));
  EXPECT_FALSE(header.needs_check);
  EXPECT_FALSE(header.finished());
}

TEST(PersistentMetadataTest, RequiredSizeCountsEverySlotOfEveryBitmapBlock) {
  // Format 2: four superblock slots, four slots per bitmap block.
  EXPECT_EQ(PersistentMetadata::RequiredSize(GeometryOf(1)), 8 * kMetadataBlockSize);
  EXPECT_EQ(PersistentMetadata::RequiredSize(GeometryOf(kR)), 8 * kMetadataBlockSize);
  EXPECT_EQ(PersistentMetadata::RequiredSize(GeometryOf(kR + 1)), 12 * kMetadataBlockSize);
  // 1 TiB at 64 KiB regions: 2^24 regions, 521 bitmap blocks.
  const CloneGeometry tib = GeometryOf(uint64_t{1} << 24, 64 << 10);
  EXPECT_EQ(PersistentMetadata::RequiredSize(tib), (4 + 4 * 521) * kMetadataBlockSize);
  // Format 1: two of each.
  EXPECT_EQ(PersistentMetadata::RequiredSize(GeometryOf(kR + 1), 1), 6 * kMetadataBlockSize);
  EXPECT_EQ(PersistentMetadata::RequiredSize(tib, 1), (2 + 2 * 521) * kMetadataBlockSize);
}

// ---- Open errors, one test each.

TEST(PersistentMetadataOpenTest, DeviceTooSmallSaysTheSizeNeeded) {
  const uint64_t required = PersistentMetadata::RequiredSize(kGeometry);
  auto device = NewDevice(required - kMetadataBlockSize);
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(meta.status().message(),
              AllOf(HasSubstr("too small"), HasSubstr(absl::StrCat(required))));
}

TEST(PersistentMetadataOpenTest, ForeignDeviceIsRefusedAndLeftUntouched) {
  auto device = NewDevice(kGeometry);
  std::vector<std::byte> foreign(kMetadataBlockSize, std::byte{'x'});
  device->Fill(0, foreign);
  const std::vector<std::byte> before = device->Contents();
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(meta.status().message(), HasSubstr("not blkclone metadata"));
  EXPECT_EQ(device->Contents(), before);
}

TEST(PersistentMetadataOpenTest, NewerFormatVersionIsUnimplementedAndNamesBothVersions) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  StoredHeader newer = HeaderOf(*device);
  newer.format_version = 7;
  WriteSuperblockRaw(*device, 1, newer);  // one slot is enough to refuse
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(meta.status().message(), AllOf(HasSubstr("version 7"), HasSubstr("versions 1 to 2")));
}

TEST(PersistentMetadataOpenTest, UnknownIncompatibleFeatureIsRefused) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  StoredHeader header = HeaderOf(*device);
  header.incompat_features = 1 << 5;
  WriteSuperblockRaw(*device, 0, header);
  WriteSuperblockRaw(*device, 1, header);
  auto meta = OpenOn(*device, kGeometry, {.read_only = true});
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(meta.status().message(), HasSubstr("0x20"));
}

TEST(PersistentMetadataOpenTest, UnknownCompatibleFeatureIsKeptByCommits) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  StoredHeader header = HeaderOf(*device);
  header.compat_features = 1 << 9;
  WriteSuperblockRaw(*device, 0, header);
  WriteSuperblockRaw(*device, 1, header);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  Commit(**meta, {{1, 1}});
  EXPECT_EQ(HeaderOf(*device).compat_features, uint64_t{1} << 9);
}

TEST(PersistentMetadataOpenTest, BadChecksumInEverySuperblockIsDataLoss) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  for (int slot = 0; slot < 4; ++slot) FlipBit(*device, slot * kMetadataBlockSize + 100);
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(
      meta.status().message(),
      AllOf(HasSubstr("superblock slot 0"), HasSubstr("superblock slot 3"), HasSubstr("checksum")));
}

TEST(PersistentMetadataOpenTest, GeometryMismatchNamesTheFieldAndBothValues) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  struct Case {
    CloneGeometry geometry;
    std::string field;
    std::string stored;
    std::string asked;
  };
  CloneGeometry bigger_dest = kGeometry;
  bigger_dest.dest_size += 4096;
  CloneGeometry smaller_source = GeometryOf(kGeometry.region_count - 1);
  smaller_source.dest_size = kGeometry.dest_size;
  const CloneGeometry larger_regions = GeometryOf(kGeometry.region_count / 2, 8192);
  for (const Case& c : {Case{larger_regions, "region size", "4096", "8192"},
                        Case{smaller_source, "source size", absl::StrCat(kGeometry.source_size),
                             absl::StrCat(smaller_source.source_size)},
                        Case{bigger_dest, "destination size", absl::StrCat(kGeometry.dest_size),
                             absl::StrCat(bigger_dest.dest_size)}}) {
    auto meta = OpenOn(*device, c.geometry);
    EXPECT_EQ(meta.status().code(), absl::StatusCode::kFailedPrecondition) << c.field;
    EXPECT_THAT(meta.status().message(),
                AllOf(HasSubstr(c.field + " " + c.stored), HasSubstr(c.asked)));
  }
}

TEST(PersistentMetadataOpenTest, NeedsCheckRefusesReadWriteButNotReadOnly) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  StoredHeader header = HeaderOf(*device);
  header.needs_check = true;
  WriteSuperblockRaw(*device, 1, header);  // same generation: either slot having it counts
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(meta.status().message(), HasSubstr("blkclone check"));
  EXPECT_TRUE(OpenOn(*device, kGeometry, {.read_only = true}).ok());
}

TEST(PersistentMetadataOpenTest, BlankDeviceIsNotFoundWithoutFormatting) {
  auto device = NewDevice(kGeometry);
  for (MetadataOpenOptions options :
       {MetadataOpenOptions{.format_if_blank = false}, MetadataOpenOptions{.read_only = true}}) {
    auto meta = OpenOn(*device, kGeometry, options);
    EXPECT_EQ(meta.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(meta.status().message(), HasSubstr("blank"));
  }
  AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
  EXPECT_EQ(PersistentMetadata::ReadHeader(view).status().code(), absl::StatusCode::kNotFound);
  const std::vector<std::byte> contents = device->Contents();
  EXPECT_TRUE(
      std::all_of(contents.begin(), contents.end(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST(PersistentMetadataOpenTest, InvalidGeometryIsAnInvalidArgument) {
  auto device = NewDevice(kGeometry);
  CloneGeometry odd = kGeometry;
  odd.region_size = 3000;
  EXPECT_EQ(OpenOn(*device, odd).status().code(), absl::StatusCode::kInvalidArgument);
  CloneGeometry miscounted = kGeometry;
  miscounted.region_count += 1;
  EXPECT_THAT(OpenOn(*device, miscounted).status().message(), HasSubstr("region count"));
}

TEST(PersistentMetadataOpenTest, DeviceBlockSizeMustDivideTheMetadataBlock) {
  auto device = *MemoryDevice::Create(
      {.size = PersistentMetadata::RequiredSize(kGeometry) * 2, .logical_block_size = 8192});
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(meta.status().message(), HasSubstr("8192"));
}

// ---- Transactions.

TEST(PersistentMetadataTest, OnlyRegionsMarkedBeforeSealArePersistedByTheCommit) {
  auto device = NewDevice(kGeometry, /*simulate_crashes=*/true);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  (*meta)->MarkHydrated(10, 5);
  (*meta)->Seal();
  (*meta)->MarkHydrated(20, 5);      // same bitmap block, after the seal
  (*meta)->MarkHydrated(kR + 1, 1);  // another block, after the seal
  ASSERT_TRUE((*meta)->CommitSealed().ok());
  EXPECT_TRUE((*meta)->map().IsSet(22));  // in core all along

  device->SimulateCrash();
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  std::vector<bool> expected(kGeometry.region_count);
  SetBits(expected, 10, 5);
  EXPECT_EQ(BitsOf((*meta)->map()), expected);
}

TEST(PersistentMetadataTest, MarksAfterSealBelongToTheNextCommit) {
  auto device = NewDevice(kGeometry, /*simulate_crashes=*/true);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  (*meta)->MarkHydrated(10, 5);
  (*meta)->Seal();
  (*meta)->MarkHydrated(20, 5);
  ASSERT_TRUE((*meta)->CommitSealed().ok());
  Commit(**meta, {});  // seals and commits the mark at 20
  device->SimulateCrash();
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  std::vector<bool> expected(kGeometry.region_count);
  SetBits(expected, 10, 5);
  SetBits(expected, 20, 5);
  EXPECT_EQ(BitsOf((*meta)->map()), expected);
}

TEST(PersistentMetadataTest, FailedCommitKeepsRegionsPendingForTheNextOne) {
  for (Op failing : {Op::kWrite, Op::kFlush}) {
    for (uint64_t skip : {0, 1}) {
      SCOPED_TRACE(absl::StrCat(OpName(failing), " skip ", skip));
      auto device = NewDevice(kGeometry, /*simulate_crashes=*/true);
      FaultInjectingDevice<MemoryDevice> faulty(*device);
      auto meta = OpenOn(faulty, kGeometry);
      ASSERT_TRUE(meta.ok());
      (*meta)->MarkHydrated(3, 4);
      (*meta)->Seal();
      faulty.AddRule({.ops = {failing}, .skip = skip, .count = 1});
      EXPECT_FALSE((*meta)->CommitSealed().ok());
      EXPECT_EQ((*meta)->generation(), 0u);
      (*meta)->MarkHydrated(kR + 9, 2);
      (*meta)->Seal();
      ASSERT_TRUE((*meta)->CommitSealed().ok());
      device->SimulateCrash();
      meta->reset();
      meta = OpenOn(*device, kGeometry);
      ASSERT_TRUE(meta.ok());
      std::vector<bool> expected(kGeometry.region_count);
      SetBits(expected, 3, 4);
      SetBits(expected, kR + 9, 2);
      EXPECT_EQ(BitsOf((*meta)->map()), expected);
    }
  }
}

TEST(PersistentMetadataTest, ReadOnlyOpenRefusesToCommit) {
  auto device = NewDevice(kGeometry);
  ASSERT_TRUE(OpenOn(*device, kGeometry).ok());
  auto meta = OpenOn(*device, kGeometry, {.read_only = true});
  ASSERT_TRUE(meta.ok());
  EXPECT_TRUE((*meta)->CommitSealed().ok());  // nothing sealed
  Commit(**meta, {});
  (*meta)->MarkHydrated(1, 1);
  (*meta)->Seal();
  EXPECT_EQ((*meta)->CommitSealed().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*meta)->SetFinished().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PersistentMetadataTest, SetFinishedCommitsTheFlag) {
  auto device = NewDevice(kGeometry, /*simulate_crashes=*/true);
  {
    auto meta = OpenOn(*device, kGeometry);
    ASSERT_TRUE(meta.ok());
    EXPECT_FALSE((*meta)->finished());
    EXPECT_EQ((*meta)->SetFinished().code(), absl::StatusCode::kFailedPrecondition);
    Commit(**meta, {{0, kGeometry.region_count}});
    ASSERT_TRUE((*meta)->SetFinished().ok());
    EXPECT_TRUE((*meta)->finished());
  }
  device->SimulateCrash();
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  EXPECT_TRUE((*meta)->finished());
  Commit(**meta, {{7, 1}});  // later commits keep it
  EXPECT_TRUE(HeaderOf(*device).finished());
}

TEST(PersistentMetadataTest, UsageCountsSuperblocksAndWrittenSlots) {
  auto device = NewDevice(kGeometry);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  const uint64_t total = PersistentMetadata::RequiredSize(kGeometry) / kMetadataBlockSize;
  EXPECT_EQ((*meta)->usage().used_blocks, 4u);  // the superblocks
  EXPECT_EQ((*meta)->usage().total_blocks, total);
  EXPECT_EQ((*meta)->usage().block_size, kMetadataBlockSize);
  Commit(**meta, {{0, 1}, {2 * kR, 1}});
  EXPECT_EQ((*meta)->usage().used_blocks, 8u);  // two copies of each
  Commit(**meta, {{1, 1}});                     // block 0's second pair
  EXPECT_EQ((*meta)->usage().used_blocks, 10u);
  Commit(**meta, {{2, 1}});  // both pairs of block 0 already in use
  EXPECT_EQ((*meta)->usage().used_blocks, 10u);
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  EXPECT_EQ((*meta)->usage().used_blocks, 10u);
}

TEST(PersistentMetadataTest, CommitsAfterTheCompleteMapWasReleased) {
  const CloneGeometry geometry = GeometryOf(kR + 10);
  auto device = NewDevice(geometry);
  auto meta = OpenOn(*device, geometry);
  ASSERT_TRUE(meta.ok());
  Commit(**meta, {{0, 5}, {6, geometry.region_count}});
  (*meta)->MarkHydrated(5, 1);
  (*meta)->Seal();
  (*meta)->ReleaseMapIfComplete();
  EXPECT_TRUE((*meta)->map().released());
  ASSERT_TRUE((*meta)->CommitSealed().ok());
  meta->reset();
  meta = OpenOn(*device, geometry);
  ASSERT_TRUE(meta.ok());
  EXPECT_TRUE((*meta)->map().AllSet());
}

// ---- I/O per commit.

class CommitIoTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(CommitIoTest, MarkingOneBitmapBlockWritesTwoCopiesOfItAndOfTheSuperblock) {
  const CloneGeometry geometry = GeometryOf(GetParam());
  auto device = NewDevice(geometry);
  CountingDevice<MemoryDevice> counting(*device);
  auto meta = OpenOn(counting, geometry);
  ASSERT_TRUE(meta.ok());
  for (int round = 0; round < 3; ++round) {
    counting.Reset();
    const uint64_t base = (geometry.region_count / 2) / kR * kR;  // some block's first region
    for (uint64_t k = 0; k < 20; ++k) (*meta)->MarkHydrated(base + 7 * k + round, 1);
    (*meta)->Seal();
    ASSERT_TRUE((*meta)->CommitSealed().ok());
    const Counts counts = counting.Snapshot();
    // One write per bitmap copy, one for both superblock copies.
    EXPECT_EQ(counts.submitted[Op::kWrite], 3u);
    EXPECT_EQ(counts.bytes_submitted[Op::kWrite], 4 * kMetadataBlockSize);
    EXPECT_EQ(counts.submitted[Op::kFlush], 2u);
    EXPECT_EQ(counts.submitted[Op::kRead], 0u);
  }
}

// One bitmap block, and 2^26 regions (2081 bitmap blocks).
INSTANTIATE_TEST_SUITE_P(SmallAndHuge, CommitIoTest,
                         ::testing::Values(uint64_t{1000}, uint64_t{1} << 26));

TEST(PersistentMetadataTest, EmptyCommitDoesNoIo) {
  auto device = NewDevice(kGeometry);
  CountingDevice<MemoryDevice> counting(*device);
  auto meta = OpenOn(counting, kGeometry);
  ASSERT_TRUE(meta.ok());
  Commit(**meta, {{1, 1}});
  counting.Reset();
  (*meta)->Seal();
  ASSERT_TRUE((*meta)->CommitSealed().ok());
  ASSERT_TRUE((*meta)->CommitSealed().ok());
  const Counts counts = counting.Snapshot();
  for (Op op : {Op::kRead, Op::kWrite, Op::kFlush, Op::kDiscard, Op::kWriteZeroes})
    EXPECT_EQ(counts.submitted[op], 0u) << OpName(op);
}

TEST(PersistentMetadataTest, CommitOfManyBlocksCoalescesNeighboursIntoLargeWrites) {
  const CloneGeometry geometry = GeometryOf(uint64_t{1} << 24);  // 521 bitmap blocks
  auto device = NewDevice(geometry);
  CountingDevice<MemoryDevice> counting(*device);
  auto meta = OpenOn(counting, geometry);
  ASSERT_TRUE(meta.ok());
  counting.Reset();
  Commit(**meta, {{0, geometry.region_count}});
  const Counts counts = counting.Snapshot();
  EXPECT_EQ(counts.bytes_submitted[Op::kWrite], 2 * (521 + 1) * kMetadataBlockSize);
  EXPECT_EQ(counts.submitted[Op::kWrite], 3u);  // a run of 521 blocks per copy, the superblocks
  meta->reset();
  meta = OpenOn(*device, geometry);
  EXPECT_TRUE((*meta)->map().AllSet());
}

// ---- Crashes and torn writes during a commit.

// A device holding committed state `before`, and the log of one more commit
// that leads to `after`, for replaying crash images.
struct RecordedCommit {
  std::vector<std::byte> initial;
  WriteLog log;
  std::vector<uint64_t> before;  // map words
  std::vector<uint64_t> after;
};

RecordedCommit RecordCommit() {
  RecordedCommit r;
  auto device = NewDevice(kGeometry);
  {
    auto meta = OpenOn(*device, kGeometry);
    Commit(**meta, {{0, 3}, {kR + 5, 2}, {3 * kR + 10, 1}});
    r.before = WordsOf((*meta)->map());
  }
  r.initial = device->Contents();
  RecordingDevice<MemoryDevice> recorder(*device);
  auto meta = OpenOn(recorder, kGeometry);
  // Blocks 0, 1 and 3 go to pair A, block 2 (never written) to pair B.
  Commit(**meta, {{7, 1}, {kR + 100, 50}, {2 * kR + 1, 1}, {3 * kR + 999, 1}});
  r.after = WordsOf((*meta)->map());
  r.log = recorder.Log();
  return r;
}

// Opens `image` read-write and checks that it holds `before` or `after`, then
// that it takes another commit correctly. Returns which state it held.
bool OpensAsBeforeOrAfter(const std::vector<std::byte>& image, const RecordedCommit& r) {
  auto device = DeviceWith(image);
  auto meta = OpenOn(*device, kGeometry);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (!meta.ok()) return false;
  std::vector<uint64_t> words = WordsOf((*meta)->map());
  EXPECT_TRUE(words == r.before || words == r.after);
  const bool after = words == r.after;
  Commit(**meta, {{kR + 200, 1}});
  words[(kR + 200) / 64] |= uint64_t{1} << ((kR + 200) % 64);
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  EXPECT_TRUE(meta.ok());
  EXPECT_TRUE(meta.ok() && WordsOf((*meta)->map()) == words);
  return after;
}

TEST(PersistentMetadataCrashTest, EveryCrashPointAndLostWriteSubsetYieldsTheOldOrNewState) {
  const RecordedCommit r = RecordCommit();
  // Three runs of bitmap blocks in two copies each, flush, both superblock copies, flush.
  std::vector<Op> ops;
  for (const LogEntry& entry : r.log) ops.push_back(entry.op);
  ASSERT_EQ(ops, (std::vector<Op>{Op::kWrite, Op::kWrite, Op::kWrite, Op::kWrite, Op::kWrite,
                                  Op::kWrite, Op::kFlush, Op::kWrite, Op::kFlush}));
  int images = 0;
  int after = 0;
  ForEachCrashImage(r.initial, r.log, [&](const std::vector<std::byte>& image) {
    auto device = DeviceWith(image);
    AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
    const CheckReport report = Check(view);
    EXPECT_TRUE(report.ok) << (report.problems.empty() ? "" : report.problems.front());
    after += OpensAsBeforeOrAfter(image, r);
    ++images;
  });
  EXPECT_EQ(images, 1 + 2 + 4 + 8 + 16 + 32 + 64 + 1 + 2 + 1);
  // Only once the superblock write lands: one image of 2 after it, and the last.
  EXPECT_EQ(after, 2);
}

TEST(PersistentMetadataCrashTest, TornWritesYieldTheOldOrNewState) {
  const RecordedCommit r = RecordCommit();
  int torn = 0;
  ForEachTornImage(r.initial, r.log, [&](const std::vector<std::byte>& image) {
    OpensAsBeforeOrAfter(image, r);
    ++torn;
  });
  EXPECT_GT(torn, 50);
}

// ---- Bit flips in every block type.

// Two commits, so that both superblock slots and both slots of bitmap block 0 are in use.
struct FlipFixture {
  std::unique_ptr<MemoryDevice> device = NewDevice(kGeometry);
  std::vector<bool> first;
  std::vector<bool> second;

  FlipFixture() {
    auto meta = OpenOn(*device, kGeometry);
    Commit(**meta, {{4, 4}, {kR + 1, 1}});
    first = BitsOf((*meta)->map());
    Commit(**meta, {{40, 4}});
    second = BitsOf((*meta)->map());
  }

  CheckReport RunCheck() {
    AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
    return Check(view);
  }
};

std::string AllText(const CheckReport& report) {
  std::string text;
  for (const auto& p : report.problems) absl::StrAppend(&text, "P: ", p, "\n");
  for (const auto& n : report.notes) absl::StrAppend(&text, "N: ", n, "\n");
  return text;
}

TEST(PersistentMetadataBitFlipTest, CurrentSuperblockCopyIsRepairedFromItsTwin) {
  for (int copy = 0; copy < 2; ++copy) {
    SCOPED_TRACE(copy);
    FlipFixture f;
    const int current = HeaderOf(*f.device).superblock_slot + copy;
    FlipBit(*f.device, current * kMetadataBlockSize + 70);  // region count field
    const CheckReport report = f.RunCheck();
    EXPECT_TRUE(report.ok) << AllText(report);
    EXPECT_THAT(AllText(report), AllOf(HasSubstr(absl::StrCat("N: superblock slot ", current)),
                                       HasSubstr("intact in its twin")));
    auto meta = OpenOn(*f.device, kGeometry);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(BitsOf((*meta)->map()), f.second);
    EXPECT_EQ((*meta)->generation(), 3u);  // the open rewrote both copies in the other pair
    EXPECT_EQ(HeaderOf(*f.device).superblock_copies, 2);
    meta->reset();
    EXPECT_TRUE(f.RunCheck().ok);
  }
}

TEST(PersistentMetadataBitFlipTest, OlderSuperblockIsNotedAndIgnored) {
  FlipFixture f;
  const int older = 2 - HeaderOf(*f.device).superblock_slot;
  FlipBit(*f.device, older * kMetadataBlockSize + 3000);
  auto meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(BitsOf((*meta)->map()), f.second);
  EXPECT_EQ((*meta)->generation(), 2u);
  meta->reset();
  EXPECT_THAT(AllText(f.RunCheck()), HasSubstr(absl::StrCat("N: superblock slot ", older)));
}

// Not detected (docs/metadata-format.md): damage to both copies looks like a
// commit whose superblock writes were both torn.
TEST(PersistentMetadataBitFlipTest, BothCopiesOfTheCurrentSuperblockFallBackToThePreviousCommit) {
  FlipFixture f;
  const int current = HeaderOf(*f.device).superblock_slot;
  FlipBit(*f.device, current * kMetadataBlockSize + 70);
  FlipBit(*f.device, (current + 1) * kMetadataBlockSize + 70);
  auto meta = OpenOn(*f.device, kGeometry, {.read_only = true});
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(BitsOf((*meta)->map()), f.first);
}

TEST(PersistentMetadataBitFlipTest, EverySuperblockCopyIsDataLoss) {
  FlipFixture f;
  for (int slot = 0; slot < 4; ++slot) FlipBit(*f.device, slot * kMetadataBlockSize + 20);
  EXPECT_EQ(OpenOn(*f.device, kGeometry).status().code(), absl::StatusCode::kDataLoss);
  const CheckReport report = f.RunCheck();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(AllText(report),
              AllOf(HasSubstr("superblock slot 0"), HasSubstr("superblock slot 3")));
}

TEST(PersistentMetadataBitFlipTest, OneCopyOfTheLatestBitmapVersionIsRepairedFromItsTwin) {
  for (uint64_t offset :
       {uint64_t{100}, uint64_t{4000}, uint64_t{9} /* magic */, uint64_t{16} /* generation */}) {
    for (int copy = 0; copy < 2; ++copy) {
      SCOPED_TRACE(absl::StrCat("offset ", offset, " copy ", copy));
      FlipFixture f;
      const int latest = CommittedSlot(*f.device, 0);
      ASSERT_EQ(latest % 2, 0);
      FlipBit(*f.device, SlotOffset(*f.device, 0, latest + copy) + offset);
      const CheckReport report = f.RunCheck();
      EXPECT_TRUE(report.ok) << AllText(report);
      EXPECT_THAT(AllText(report), HasSubstr("N: bitmap block 0 "));
      auto meta = OpenOn(*f.device, kGeometry);
      ASSERT_TRUE(meta.ok()) << meta.status();
      EXPECT_EQ(BitsOf((*meta)->map()), f.second);
      EXPECT_FALSE(HeaderOf(*f.device).needs_check);
      // The open rewrote the block: its new version has both copies.
      const int now = CommittedSlot(*f.device, 0);
      EXPECT_NE(now / 2, latest / 2);
      meta->reset();
      EXPECT_THAT(AllText(f.RunCheck()), Not(HasSubstr("twin")));
    }
  }
}

TEST(PersistentMetadataBitFlipTest, BothCopiesOfTheLatestBitmapVersionAreDataLossUntilRepaired) {
  FlipFixture f;
  const int latest = CommittedSlot(*f.device, 0);
  FlipBit(*f.device, SlotOffset(*f.device, 0, latest) + 100);
  FlipBit(*f.device, SlotOffset(*f.device, 0, Twin(latest)) + 4000);
  auto meta = OpenOn(*f.device, kGeometry);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(meta.status().message(), AllOf(HasSubstr("bitmap block 0 "), HasSubstr("--repair")));
  EXPECT_TRUE(HeaderOf(*f.device).needs_check);
  auto again = OpenOn(*f.device, kGeometry);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("check"));
  EXPECT_EQ(OpenOn(*f.device, kGeometry, {.read_only = true}).status().code(),
            absl::StatusCode::kDataLoss);
  CheckReport report = f.RunCheck();
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(AllText(report),
              AllOf(HasSubstr(absl::StrCat("P: bitmap block 0 (regions 0..", kR - 1, "), slot A")),
                    HasSubstr("needs_check is set")));
  AnyBlockDevice view = AnyBlockDevice::Borrow(*f.device);
  EXPECT_EQ(ClearNeedsCheck(view).code(), absl::StatusCode::kFailedPrecondition);

  // The repair accepts the loss: block 0 goes back to its older version.
  auto before = Repair(view);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_FALSE(before->ok);
  report = f.RunCheck();
  EXPECT_TRUE(report.ok) << AllText(report);
  EXPECT_FALSE(report.header->needs_check);
  meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(BitsOf((*meta)->map()), f.first);
}

TEST(PersistentMetadataBitFlipTest, OlderBitmapCopyIsNotedAndIgnored) {
  FlipFixture f;
  const int older = 2 - CommittedSlot(*f.device, 0);
  FlipBit(*f.device, SlotOffset(*f.device, 0, older) + 500);
  auto meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(BitsOf((*meta)->map()), f.second);
  meta->reset();
  const CheckReport report = f.RunCheck();
  EXPECT_TRUE(report.ok) << AllText(report);
  EXPECT_THAT(AllText(report), HasSubstr(absl::StrCat("N: bitmap block 0 (regions 0..", kR - 1,
                                                      "), slot ", older == 0 ? "A1" : "B1")));
}

TEST(PersistentMetadataBitFlipTest, EveryBitmapCopyIsDataLoss) {
  FlipFixture f;
  for (int slot = 0; slot < 4; ++slot) FlipBit(*f.device, SlotOffset(*f.device, 0, slot) + 300);
  EXPECT_EQ(OpenOn(*f.device, kGeometry).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(f.RunCheck().ok);
}

TEST(PersistentMetadataBitFlipTest, BothCopiesOfAnOnceWrittenBlockAreDataLoss) {
  FlipFixture f;
  const int only = CommittedSlot(*f.device, 1);
  FlipBit(*f.device, SlotOffset(*f.device, 1, only) + 2000);
  FlipBit(*f.device, SlotOffset(*f.device, 1, Twin(only)) + 2000);
  auto meta = OpenOn(*f.device, kGeometry, {.read_only = true});
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(meta.status().message(), HasSubstr("bitmap block 1 "));
  EXPECT_FALSE(HeaderOf(*f.device).needs_check);  // read-only opens write nothing
}

// ---- Reloads.

TEST(PersistentMetadataTest, ReloadCommittedDropsUncommittedMarksAndKeepsOldMapsAlive) {
  auto device = NewDevice(kGeometry);
  CountingDevice<MemoryDevice> counting(*device);
  auto meta = OpenOn(counting, kGeometry);
  ASSERT_TRUE(meta.ok());
  Commit(**meta, {{1, 2}});
  (*meta)->MarkHydrated(50, 1);
  (*meta)->Seal();
  (*meta)->MarkHydrated(kR + 50, 1);
  const RegionMap& old_map = (*meta)->map();
  ASSERT_TRUE((*meta)->ReloadCommitted().ok());
  std::vector<bool> expected(kGeometry.region_count);
  SetBits(expected, 1, 2);
  EXPECT_EQ(BitsOf((*meta)->map()), expected);
  EXPECT_TRUE(old_map.IsSet(50) && old_map.IsSet(kR + 50));
  counting.Reset();
  (*meta)->Seal();
  ASSERT_TRUE((*meta)->CommitSealed().ok());  // the dropped seal is gone too
  EXPECT_EQ(counting.Snapshot().submitted[Op::kWrite], 0u);
  Commit(**meta, {{9, 1}});
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  SetBits(expected, 9, 1);
  EXPECT_EQ(BitsOf((*meta)->map()), expected);
}

TEST(PersistentMetadataTest, ReloadAfterAFailedCommitThenCommitsCorrectly) {
  for (uint64_t skip : {0, 1, 2}) {
    SCOPED_TRACE(skip);
    auto device = NewDevice(kGeometry, /*simulate_crashes=*/true);
    FaultInjectingDevice<MemoryDevice> faulty(*device);
    auto meta = OpenOn(faulty, kGeometry);
    ASSERT_TRUE(meta.ok());
    Commit(**meta, {{0, 1}});
    (*meta)->MarkHydrated(5, 1);
    (*meta)->MarkHydrated(kR + 5, 1);
    (*meta)->Seal();
    // Fails the second bitmap write or the superblock write: the first lands.
    faulty.AddRule({.ops = {Op::kWrite}, .skip = skip, .count = 1});
    ASSERT_FALSE((*meta)->CommitSealed().ok());
    faulty.ClearRules();
    ASSERT_TRUE((*meta)->ReloadCommitted().ok());
    std::vector<bool> expected(kGeometry.region_count);
    SetBits(expected, 0, 1);
    EXPECT_EQ(BitsOf((*meta)->map()), expected);
    Commit(**meta, {{7, 1}});
    SetBits(expected, 7, 1);
    device->SimulateCrash();
    meta->reset();
    meta = OpenOn(*device, kGeometry);
    ASSERT_TRUE(meta.ok());
    EXPECT_EQ(BitsOf((*meta)->map()), expected);
  }
}

TEST(PersistentMetadataTest, ReloadThatFindsDamageFailsAndStopsCommits) {
  auto device = NewDevice(kGeometry);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  Commit(**meta, {{0, 1}});
  const int committed = CommittedSlot(*device, 0);
  FlipBit(*device, SlotOffset(*device, 0, committed) + 1000);
  FlipBit(*device, SlotOffset(*device, 0, Twin(committed)) + 1000);
  const absl::Status reload = (*meta)->ReloadCommitted();
  EXPECT_EQ(reload.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE((*meta)->map().IsSet(0));  // the old map stays in use
  EXPECT_TRUE(HeaderOf(*device).needs_check);
  (*meta)->MarkHydrated(3, 1);
  (*meta)->Seal();
  EXPECT_EQ((*meta)->CommitSealed().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PersistentMetadataTest, ConcurrentMarksDuringCommitsAllReachTheDisk) {
  auto device = NewDevice(kGeometry);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok());
  constexpr int kThreads = 3;
  constexpr uint64_t kMarks = 2000;
  std::atomic<bool> done{false};
  BoundedThread committer([&] {
    while (!done.load()) {
      (*meta)->Seal();
      EXPECT_TRUE((*meta)->CommitSealed().ok());
    }
  });
  std::deque<BoundedThread> markers;
  for (int t = 0; t < kThreads; ++t) {
    markers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (uint64_t i = 0; i < kMarks; ++i) {
        const uint64_t first = rng() % kGeometry.region_count;
        (*meta)->MarkHydrated(first, 1 + rng() % 100);
        (void)(*meta)->map().FindNextUnset(first);
      }
    });
  }
  for (BoundedThread& m : markers) m.Join();
  done = true;
  committer.Join();
  const std::vector<bool> in_core = BitsOf((*meta)->map());
  Commit(**meta, {});
  meta->reset();
  meta = OpenOn(*device, kGeometry);
  EXPECT_EQ(BitsOf((*meta)->map()), in_core);
}

// ---- Model-based property: random marks, seals, commits (some failing),
// reloads and crashes against a model of the committed regions.

RC_GTEST_PROP(PersistentMetadataProperty, CommittedStateFollowsTheModelAcrossCrashes, ()) {
  const CloneGeometry geometry = GeometryOf(2 * kR + *rc::gen::inRange<uint64_t>(1, 200));
  auto device = NewDevice(geometry, /*simulate_crashes=*/true);
  FaultInjectingDevice<MemoryDevice> faulty(*device);
  auto meta = OpenOn(faulty, geometry);
  RC_ASSERT(meta.ok());
  const size_t n = geometry.region_count;
  std::vector<bool> live(n), pending(n), sealed(n), committed(n);
  auto count = [](const std::vector<bool>& v) { return std::count(v.begin(), v.end(), true); };
  const int steps = *rc::gen::inRange(1, 40);
  for (int step = 0; step < steps; ++step) {
    switch (*rc::gen::inRange(0, 7)) {
      case 0:
      case 1: {
        const uint64_t first = *rc::gen::inRange<uint64_t>(0, n);
        const uint64_t length = *rc::gen::oneOf(rc::gen::inRange<uint64_t>(1, 70),
                                                rc::gen::inRange<uint64_t>(1, kR + 100));
        (*meta)->MarkHydrated(first, length);
        SetBits(live, first, length);
        SetBits(pending, first, length);
        break;
      }
      case 2:
        (*meta)->Seal();
        for (size_t r = 0; r < n; ++r) sealed[r] = sealed[r] || pending[r];
        pending.assign(n, false);
        break;
      case 3:
      case 4: {
        // A fault in some write, or in the flush before the superblock; never
        // in the last flush, after which the outcome would be unknown.
        const bool fail = *rc::gen::arbitrary<bool>();
        if (fail) {
          faulty.AddRule(*rc::gen::arbitrary<bool>()
                             ? FaultRule{.ops = {Op::kWrite},
                                         .skip = *rc::gen::inRange<uint64_t>(0, 4),
                                         .count = 1}
                             : FaultRule{.ops = {Op::kFlush}, .count = 1});
        }
        const absl::Status status = (*meta)->CommitSealed();
        faulty.ClearRules();
        if (status.ok()) {
          for (size_t r = 0; r < n; ++r) committed[r] = committed[r] || sealed[r];
          sealed.assign(n, false);
        }
        break;
      }
      case 5:
        RC_ASSERT((*meta)->ReloadCommitted().ok());
        live = committed;
        pending.assign(n, false);
        sealed.assign(n, false);
        RC_ASSERT(BitsOf((*meta)->map()) == committed);
        break;
      case 6: {
        meta->reset();
        device->SimulateCrash();
        AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
        RC_ASSERT(Check(view).ok);
        meta = OpenOn(faulty, geometry);
        RC_ASSERT(meta.ok());
        live = committed;
        pending.assign(n, false);
        sealed.assign(n, false);
        RC_ASSERT(BitsOf((*meta)->map()) == committed);
        break;
      }
    }
    RC_ASSERT((*meta)->map().CountSet() == static_cast<uint64_t>(count(live)));
  }
  (*meta)->Seal();
  RC_ASSERT((*meta)->CommitSealed().ok());
  meta->reset();
  device->SimulateCrash();
  meta = OpenOn(*device, geometry);
  RC_ASSERT(meta.ok());
  RC_ASSERT(BitsOf((*meta)->map()) == live);
}

// ---- Scale: 2^32 regions on a sparse file.

TEST(PersistentMetadataScaleTest, OpensAndCommitsTwoToTheThirtyTwoRegionsWithLargeReads) {
  const auto started = std::chrono::steady_clock::now();
  const CloneGeometry geometry = GeometryOf(uint64_t{1} << 32);
  const uint64_t size = PersistentMetadata::RequiredSize(geometry);
  EXPECT_GT(size, uint64_t{1} << 30);
  auto dir = testing::TempDir::Create("metadata-scale");
  ASSERT_TRUE(dir.ok());
  auto path = dir->CreateFile("meta.img", size);
  ASSERT_TRUE(path.ok());
  const uint64_t high = (uint64_t{1} << 31) + 12345;
  const uint64_t last = geometry.region_count - 1;
  {
    auto file = FileDevice::Open(*path, {});
    ASSERT_TRUE(file.ok());
    CountingDevice<FileDevice> counting(**file);
    auto meta = OpenOn(counting, geometry);
    ASSERT_TRUE(meta.ok()) << meta.status();
    counting.Reset();
    Commit(**meta, {{0, 3}, {high, 2}, {last, 1}});
    const Counts counts = counting.Snapshot();
    EXPECT_EQ(counts.bytes_submitted[Op::kWrite],
              8 * kMetadataBlockSize);  // 2 * (3 bitmap + 1 super)
    EXPECT_EQ(counts.submitted[Op::kFlush], 2u);
  }
  auto file = FileDevice::Open(*path, {});
  ASSERT_TRUE(file.ok());
  CountingDevice<FileDevice> counting(**file);
  auto meta = OpenOn(counting, geometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  const Counts counts = counting.Snapshot();
  EXPECT_GE(counts.bytes_submitted[Op::kRead], size - 4 * kMetadataBlockSize);
  EXPECT_GE(counts.bytes_submitted[Op::kRead] / counts.submitted[Op::kRead], uint64_t{1} << 20);
  const RegionMap& map = (*meta)->map();
  EXPECT_EQ(map.CountSet(), 6u);
  EXPECT_TRUE(map.IsSet(2) && map.IsSet(high) && map.IsSet(high + 1) && map.IsSet(last));
  EXPECT_EQ(map.FindNextSet(3), high);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
  RecordProperty("seconds", absl::StrCat(seconds.count()));
}

}  // namespace
}  // namespace blkclone

// Format 1 metadata under this build: read as it is, upgraded in place to
// format 2 by a read-write open when the device has room (else kept in format
// 1), and a crash or torn write at any point of the upgrade leaves metadata
// that opens with the same committed state.
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metadata_fixtures.hpp"

namespace blkclone {
namespace {

using testing::Commit;
using testing::DeviceWith;
using ::testing::ElementsAre;
using testing::ExpectCheckPasses;
using testing::ExpectReopensWith;
using testing::ForEachCrashImage;
using testing::ForEachTornImage;
using testing::GeometryOf;
using ::testing::HasSubstr;
using testing::HeaderOf;
using testing::kR;
using testing::NewDevice;
using testing::OpenOn;
using testing::WordsOf;

// Three bitmap blocks; format 1 uses metadata blocks 0..7, and an upgrade puts
// the four format 2 slot arrays after them.
const CloneGeometry kGeometry = GeometryOf(2 * kR + 10);
constexpr uint64_t kUpgradableSize = (2 + 2 * 3 + 4 * 3) * kMetadataBlockSize;

struct Format1 {
  std::unique_ptr<MemoryDevice> device;
  std::vector<uint64_t> words;  // the committed map
};

// Format 1 metadata on a device of `size` bytes with two commits, blocks 0 and 2 hydrated in part.
Format1 MakeFormat1(uint64_t size) {
  Format1 f{.device = NewDevice(size), .words = {}};
  auto meta = OpenOn(*f.device, kGeometry, {.format_if_blank = true, .format_version = 1});
  Commit(**meta, {{0, 3}, {2 * kR + 1, 1}});
  Commit(**meta, {{100, 7}});
  f.words = WordsOf((*meta)->map());
  EXPECT_EQ((*meta)->format_version(), 1u);
  return f;
}

std::vector<std::string> NotesOf(MemoryDevice& device) {
  AnyBlockDevice view = AnyBlockDevice::Borrow(device);
  const CheckReport report = Check(view);
  EXPECT_TRUE(report.ok) << (report.problems.empty() ? "" : report.problems.front());
  return report.notes;
}

TEST(MetadataUpgradeTest, ReadOnlyOpenReadsFormat1AsItIs) {
  Format1 f = MakeFormat1(kUpgradableSize);
  const std::vector<std::byte> before = f.device->Contents();
  auto meta = OpenOn(*f.device, kGeometry, {.read_only = true});
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ((*meta)->format_version(), 1u);
  EXPECT_EQ(WordsOf((*meta)->map()), f.words);
  EXPECT_EQ(f.device->Contents(), before);
  AnyBlockDevice view = AnyBlockDevice::Borrow(*f.device);
  EXPECT_THAT(*DumpText(view), HasSubstr("format version: 1\n"));
  EXPECT_THAT(NotesOf(*f.device),
              ElementsAre("metadata format 1, whose committed state has one copy: a read-write "
                          "open upgrades it to format 2"));
}

TEST(MetadataUpgradeTest, ReadWriteOpenUpgradesInPlaceKeepingTheCommittedState) {
  Format1 f = MakeFormat1(kUpgradableSize);
  const uint64_t generation = HeaderOf(*f.device).generation;
  {
    auto meta = OpenOn(*f.device, kGeometry);
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ((*meta)->format_version(), 2u);
    EXPECT_EQ((*meta)->generation(), generation + 1);
    EXPECT_EQ(WordsOf((*meta)->map()), f.words);
  }
  const StoredHeader header = HeaderOf(*f.device);
  EXPECT_EQ(header.format_version, 2u);
  EXPECT_EQ(header.superblock_copies, 2);
  EXPECT_EQ(header.layout.slot_start[0], 8u);  // after everything format 1 used
  EXPECT_THAT(NotesOf(*f.device), ElementsAre());
  AnyBlockDevice view = AnyBlockDevice::Borrow(*f.device);
  EXPECT_THAT(*DumpText(view), HasSubstr("format version: 2\n"));

  auto meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  Commit(**meta, {{kR, 1}});
  const std::vector<uint64_t> words = WordsOf((*meta)->map());
  meta->reset();
  ExpectReopensWith(*f.device, kGeometry, words);
}

TEST(MetadataUpgradeTest, WithoutRoomForFormat2ItStaysFormat1AndCheckSaysSo) {
  Format1 f = MakeFormat1(PersistentMetadata::RequiredSize(kGeometry, 1));
  auto meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ((*meta)->format_version(), 1u);
  Commit(**meta, {{kR, 1}});
  meta->reset();
  EXPECT_THAT(NotesOf(*f.device),
              ElementsAre(HasSubstr(absl::StrCat("it stays so, as upgrading to format 2 in place "
                                                 "needs a metadata device of ",
                                                 kUpgradableSize, " bytes"))));
}

TEST(MetadataUpgradeTest, Format1WithItsSuperblocksZeroedIsBlank) {
  Format1 f = MakeFormat1(kUpgradableSize);
  f.device->Fill(0, std::vector<std::byte>(2 * kMetadataBlockSize));  // its bitmap follows
  auto meta = OpenOn(*f.device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ((*meta)->generation(), 0u);
  EXPECT_EQ((*meta)->map().CountSet(), 0u);
  EXPECT_EQ((*meta)->format_version(), 2u);
}

// The upgrade's writes, recorded from a read-write open of format 1 metadata.
struct RecordedUpgrade {
  std::vector<std::byte> initial;
  WriteLog log;
  std::vector<uint64_t> words;
};

RecordedUpgrade RecordUpgrade() {
  Format1 f = MakeFormat1(kUpgradableSize);
  RecordedUpgrade r{.initial = f.device->Contents(), .log = {}, .words = f.words};
  RecordingDevice<MemoryDevice> recorder(*f.device);
  EXPECT_TRUE(OpenOn(recorder, kGeometry).ok());
  r.log = recorder.Log();
  return r;
}

// The image opens read-write with the committed state (upgrading, or finishing
// the upgrade), passes Check, and takes a commit that a reopen reads back.
void ExpectUpgradedState(const std::vector<std::byte>& image, const RecordedUpgrade& r) {
  auto device = DeviceWith(image);
  ExpectCheckPasses(*device);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ((*meta)->format_version(), 2u);
  ASSERT_EQ(WordsOf((*meta)->map()), r.words);
  Commit(**meta, {{kR + 3, 1}});
  std::vector<uint64_t> words = r.words;
  words[(kR + 3) / 64] |= uint64_t{1} << ((kR + 3) % 64);
  meta->reset();
  ExpectCheckPasses(*device);
  ExpectReopensWith(*device, kGeometry, words);
}

TEST(MetadataUpgradeTest, ACrashAtEveryPointOfTheUpgradeKeepsTheCommittedState) {
  const RecordedUpgrade r = RecordUpgrade();
  // Zero the new arrays; both copies of blocks 0 and 2; flush; the format 2
  // superblock into the free format 1 slot; flush; into the other three; flush.
  std::vector<Op> ops;
  for (const LogEntry& entry : r.log) ops.push_back(entry.op);
  ASSERT_EQ(ops, (std::vector<Op>{Op::kDiscard, Op::kWrite, Op::kWrite, Op::kWrite, Op::kWrite,
                                  Op::kFlush, Op::kWrite, Op::kFlush, Op::kWrite, Op::kWrite,
                                  Op::kFlush}));
  int images = 0;
  ForEachCrashImage(r.initial, r.log, [&](const std::vector<std::byte>& image) {
    ExpectUpgradedState(image, r);
    ++images;
  });
  EXPECT_EQ(images, 1 + 2 + 4 + 8 + 16 + 32 + 1 + 2 + 1 + 2 + 4 + 1);
}

TEST(MetadataUpgradeTest, ATornWriteAnywhereInTheUpgradeKeepsTheCommittedState) {
  const RecordedUpgrade r = RecordUpgrade();
  int torn = 0;
  ForEachTornImage(r.initial, r.log, [&](const std::vector<std::byte>& image) {
    ExpectUpgradedState(image, r);
    ++torn;
  });
  // 7 splits of each one-block write (4 bitmap, 2 superblock), 15 of the two-block one.
  EXPECT_EQ(torn, 2 * (7 * 6 + 15));
}

}  // namespace
}  // namespace blkclone

// Damage to one byte or one sector anywhere in the metadata after committed
// writes: the committed state is read from the other copy, never a rollback of
// a committed write. The first test is the case format 1 got wrong: a byte of
// the newest superblock made it fall back to the previous commit silently.
// BLKCLONE_METADATA_DAMAGE_EVERY_BYTE=1 flips every byte instead of a sample.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"
#include "metadata_fixtures.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::Commit;
using testing::DeviceWith;
using testing::ExpectCheckPasses;
using testing::ExpectReopensWith;
using testing::GeometryOf;
using testing::HeaderOf;
using testing::kR;
using testing::NewDevice;
using testing::OpenOn;
using testing::WordsOf;

// Two bitmap blocks, so that one has a pair never written.
const CloneGeometry kGeometry = GeometryOf(kR + 100);

struct Committed {
  std::vector<std::byte> image;
  std::vector<uint64_t> words;  // of the committed map
};

// Two commits: every superblock slot and every slot of bitmap block 0 hold a
// version; bitmap block 1 has one pair written, the other blank.
Committed CommitTwice() {
  auto device = NewDevice(kGeometry);
  auto meta = OpenOn(*device, kGeometry);
  Commit(**meta, {{0, 3}, {kR + 5, 1}});
  Commit(**meta, {{10, 2}});
  return {.image = device->Contents(), .words = WordsOf((*meta)->map())};
}

// `image`, damaged after `committed` was committed, opens read-write with
// exactly the committed state and passes Check, before and after the open's
// rewrite; a later read-only open agrees.
void ExpectCommittedState(const std::vector<std::byte>& image,
                          const std::vector<uint64_t>& committed) {
  auto device = DeviceWith(image);
  ExpectCheckPasses(*device);
  auto meta = OpenOn(*device, kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  ASSERT_EQ(WordsOf((*meta)->map()), committed) << "a committed write was rolled back";
  meta->reset();
  ExpectCheckPasses(*device);
  ExpectReopensWith(*device, kGeometry, committed);
}

TEST(MetadataDamageTest, AByteFlippedInAnySuperblockCopyNeverRollsBackACommit) {
  auto device = NewDevice(kGeometry);
  std::vector<uint64_t> committed;
  {
    auto meta = OpenOn(*device, kGeometry);
    ASSERT_TRUE(meta.ok());
    Commit(**meta, {{0, 1}});
    committed = WordsOf((*meta)->map());
  }
  const std::vector<std::byte> image = device->Contents();
  const int newest = HeaderOf(*device).superblock_slot;
  // Byte 40 (compatible features) of the newest copy, as in the report, then
  // every byte of the fields and a sample of the rest, in every slot.
  std::vector<std::byte> damaged = image;
  damaged[newest * kMetadataBlockSize + 40] ^= std::byte{0xff};
  ExpectCommittedState(damaged, committed);
  for (uint64_t block = 0; block < 4; ++block) {
    for (uint64_t byte = 0; byte < kMetadataBlockSize; byte += byte < 136 ? 1 : 61) {
      SCOPED_TRACE(absl::StrCat("block ", block, " byte ", byte));
      damaged = image;
      damaged[block * kMetadataBlockSize + byte] ^= std::byte{0xff};
      ExpectCommittedState(damaged, committed);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(MetadataDamageTest, AnyByteFlippedAfterTwoCommitsKeepsTheCommittedState) {
  const Committed c = CommitTwice();
  const bool every = std::getenv("BLKCLONE_METADATA_DAMAGE_EVERY_BYTE") != nullptr;
  int cases = 0;
  for (uint64_t offset = 0; offset < c.image.size();) {
    SCOPED_TRACE(absl::StrCat("metadata block ", offset / kMetadataBlockSize, " byte ",
                              offset % kMetadataBlockSize));
    std::vector<std::byte> damaged = c.image;
    damaged[offset] ^= std::byte{0xff};
    ExpectCommittedState(damaged, c.words);
    if (::testing::Test::HasFailure()) return;
    ++cases;
    // Every byte of the headers (superblock fields, bitmap block header), a sample of the rest.
    offset += every || offset % kMetadataBlockSize < 136 ? 1 : 61;
  }
  RecordProperty("cases", cases);
}

TEST(MetadataDamageTest, AnySectorZeroedOrOverwrittenAfterTwoCommitsKeepsTheCommittedState) {
  constexpr uint64_t kSector = 512;
  const Committed c = CommitTwice();
  const std::vector<std::byte> noise = testing::RandomBytes(kSector, 5);
  for (uint64_t offset = 0; offset < c.image.size(); offset += kSector) {
    for (bool zero : {true, false}) {
      SCOPED_TRACE(absl::StrCat("sector at ", offset, zero ? " zeroed" : " overwritten"));
      std::vector<std::byte> damaged = c.image;
      if (zero) {
        std::memset(damaged.data() + offset, 0, kSector);
      } else {
        std::memcpy(damaged.data() + offset, noise.data(), kSector);
      }
      ExpectCommittedState(damaged, c.words);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace
}  // namespace blkclone

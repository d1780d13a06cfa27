// Check, ClearNeedsCheck and the dumps; and the fuzzing seeds, which double as
// a format-stability test: regenerated images must match the checked-in bytes.
#include "blkclone/metadata_check.hpp"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using internal::kRegionsPerBitmapBlock;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kR = kRegionsPerBitmapBlock;
const Uuid kUuid{{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                  0xdd, 0xee, 0xff}};

CloneGeometry GeometryOf(uint64_t regions) {
  return CloneGeometry{.source_size = regions * 4096,
                       .dest_size = regions * 4096,
                       .region_size = 4096,
                       .region_count = regions};
}

// Three bitmap blocks, the last one partial.
const CloneGeometry kGeometry = GeometryOf(2 * kR + 100);

// A formatted metadata device and an open PersistentMetadata over it.
struct TestMetadata {
  explicit TestMetadata(const CloneGeometry& geometry = kGeometry)
      : device(*MemoryDevice::Create({.size = PersistentMetadata::RequiredSize(geometry)})),
        meta(*PersistentMetadata::Open(AnyBlockDevice::Borrow(*device), geometry,
                                       {.format_uuid = kUuid})) {}

  void Commit(std::initializer_list<std::pair<uint64_t, uint64_t>> ranges) {
    for (auto [first, count] : ranges) meta->MarkHydrated(first, count);
    meta->Seal();
    ASSERT_TRUE(meta->CommitSealed().ok());
  }
  StoredHeader Header() { return *PersistentMetadata::ReadHeader(view); }
  uint64_t SlotOffset(uint64_t block, int slot) {
    return (Header().layout.slot_start[slot] + block) * kMetadataBlockSize;
  }
  void Overwrite(uint64_t offset, std::span<const std::byte> bytes) { device->Fill(offset, bytes); }

  std::unique_ptr<MemoryDevice> device;
  std::unique_ptr<PersistentMetadata> meta;
  AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
};

// The commits behind the dump tests: generation 3 in superblock slot 1.
void CommitDumpExample(TestMetadata& m) {
  m.Commit({{0, 4}, {10, 1}});
  m.Commit({{4, 1}, {kR - 1, 2}});  // extends [0, 3]; [kR - 1, kR] crosses a block boundary
  m.Commit({{kGeometry.region_count - 1, 1}});
}

TEST(MetadataCheckTest, PassesOnFreshMetadata) {
  TestMetadata m;
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_TRUE(report.problems.empty());
  EXPECT_TRUE(report.notes.empty());
  ASSERT_TRUE(report.header.has_value());
  EXPECT_EQ(report.header->uuid, kUuid);
  EXPECT_EQ(report.header->geometry, kGeometry);
  EXPECT_EQ(report.hydrated_regions, 0u);
}

TEST(MetadataCheckTest, PassesOnUsedMetadataAndCountsHydratedRegions) {
  TestMetadata m;
  CommitDumpExample(m);
  m.meta->MarkHydrated(50, 5);  // not committed: not counted
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_TRUE(report.notes.empty());
  EXPECT_EQ(report.hydrated_regions, 9u);
  EXPECT_EQ(report.header->generation, 3u);
}

TEST(MetadataCheckTest, FailsOnABlankOrForeignDevice) {
  auto blank = *MemoryDevice::Create({.size = 8 * kMetadataBlockSize});
  AnyBlockDevice view = AnyBlockDevice::Borrow(*blank);
  CheckReport report = Check(view);
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(report.problems, ElementsAre(HasSubstr("blank")));
  blank->Fill(0, std::vector<std::byte>(kMetadataBlockSize, std::byte{'x'}));
  report = Check(view);
  EXPECT_THAT(report.problems, ElementsAre(HasSubstr("not blkclone metadata")));
  EXPECT_FALSE(report.header.has_value());
}

TEST(MetadataCheckTest, ReportsEveryInjectedProblemWithItsBlock) {
  TestMetadata m;
  CommitDumpExample(m);
  const StoredHeader header = m.Header();
  // 1. The latest copy of bitmap block 0 (slot A, generation 2) fails its checksum.
  std::vector<std::byte> junk(8, std::byte{0x5a});
  m.Overwrite(m.SlotOffset(0, 0) + 1000, junk);
  // 2. Garbage where bitmap block 1 has an unused slot (A).
  m.Overwrite(m.SlotOffset(1, 0), std::vector<std::byte>(kMetadataBlockSize, std::byte{0xab}));
  // 3. A valid copy of bitmap block 2 with a bit set past the last region.
  std::vector<std::byte> stray(kMetadataBlockSize);
  const auto block = std::span<std::byte, kMetadataBlockSize>(stray);
  internal::StoreBitmapWord(block, 1, uint64_t{1} << 40);  // region 2 * kR + 104
  internal::SealBitmapBlock(block, kUuid, 2, header.generation);
  m.Overwrite(m.SlotOffset(2, 1), stray);
  // 4. The older superblock slot holds something that is not a superblock.
  m.Overwrite((1 - header.superblock_slot) * kMetadataBlockSize,
              std::vector<std::byte>(kMetadataBlockSize, std::byte{'x'}));

  const CheckReport report = Check(m.view);
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(
      report.problems,
      ElementsAre(HasSubstr("superblock slot 0 (metadata block 0) has no blkclone magic"),
                  HasSubstr(absl::StrCat("bitmap block 0 (regions 0..", kR - 1,
                                         "), slot A at metadata block 2: fails its "
                                         "checksum")),
                  HasSubstr(absl::StrCat("bitmap block 1 (regions ", kR, "..", 2 * kR - 1,
                                         "), slot A at metadata block 3: holds data")),
                  HasSubstr(absl::StrCat("bitmap block 2 (regions ", 2 * kR, "..", 2 * kR + 99,
                                         "), slot B at metadata block 7: "
                                         "bits set past the last region"))));
}

TEST(MetadataCheckTest, NotesTracesOfAnInterruptedCommitButPasses) {
  TestMetadata m;
  m.Commit({{0, 1}});
  m.meta.reset();
  FaultInjectingDevice<MemoryDevice> faulty(*m.device);
  auto meta = *PersistentMetadata::Open(AnyBlockDevice::Borrow(faulty), kGeometry);
  meta->MarkHydrated(1, 1);
  meta->Seal();
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 1, .count = 1});  // the superblock write
  ASSERT_FALSE(meta->CommitSealed().ok());
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_THAT(report.notes, ElementsAre(HasSubstr("slot A at metadata block 2: holds generation "
                                                  "2, newer than the superblock's 1")));
  EXPECT_EQ(report.hydrated_regions, 1u);
}

TEST(MetadataCheckTest, ClearNeedsCheckClearsTheFlagOnceCheckPasses) {
  TestMetadata m;
  m.Commit({{3, 3}});
  m.meta.reset();
  StoredHeader flagged = m.Header();
  flagged.needs_check = true;
  std::vector<std::byte> block(kMetadataBlockSize);
  internal::EncodeSuperblock(flagged, std::span<std::byte, kMetadataBlockSize>(block));
  m.Overwrite(flagged.superblock_slot * kMetadataBlockSize, block);
  ASSERT_EQ(PersistentMetadata::Open(AnyBlockDevice::Borrow(*m.device), kGeometry).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_THAT(report.notes, ElementsAre(HasSubstr("needs_check is set")));

  ASSERT_TRUE(ClearNeedsCheck(m.view).ok());
  EXPECT_FALSE(m.Header().needs_check);
  auto reopened = PersistentMetadata::Open(AnyBlockDevice::Borrow(*m.device), kGeometry);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->map().CountSet(), 3u);
  EXPECT_EQ((*reopened)->generation(), 1u);
}

TEST(MetadataCheckTest, ClearNeedsCheckRefusesWhileProblemsRemain) {
  TestMetadata m;
  m.Commit({{3, 3}});
  m.meta.reset();
  m.Overwrite(m.SlotOffset(0, 1) + 2000, std::vector<std::byte>(4, std::byte{1}));
  EXPECT_FALSE(PersistentMetadata::Open(AnyBlockDevice::Borrow(*m.device), kGeometry).ok());
  ASSERT_TRUE(m.Header().needs_check);
  const absl::Status status = ClearNeedsCheck(m.view);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("bitmap block 0"));
  EXPECT_TRUE(m.Header().needs_check);
}

TEST(MetadataDumpTest, TextListsGeometryFlagsUsageAndMergedRanges) {
  TestMetadata m;
  CommitDumpExample(m);
  const auto text = DumpText(m.view);
  ASSERT_TRUE(text.ok()) << text.status();
  const uint64_t n = kGeometry.region_count;
  EXPECT_EQ(*text, absl::StrCat("format version: 1\n"
                                "uuid: 00112233-4455-6677-8899-aabbccddeeff\n"
                                "generation: 3 (superblock slot 1)\n"
                                "region size: 4096\n"
                                "region count: ",
                                n, "\n", "source size: ", n * 4096, "\n",
                                "destination size: ", n * 4096, "\n",
                                "compat features: 0x0\n"
                                "incompat features: 0x0\n"
                                "finished: no\n"
                                "needs check: no\n"
                                "metadata blocks: 6/8 used, 4096 bytes each\n"
                                "hydrated regions: 9/",
                                n, "\n",
                                "hydrated ranges:\n"
                                "  [0, 4]\n"
                                "  [10, 10]\n"
                                "  [",
                                kR - 1, ", ", kR, "]\n", "  [", n - 1, ", ", n - 1, "]\n"));
}

TEST(MetadataDumpTest, JsonHasTheSameFactsAsOneObject) {
  TestMetadata m;
  CommitDumpExample(m);
  ASSERT_TRUE(m.meta->SetFinished().ok());
  const auto json = DumpJson(m.view);
  ASSERT_TRUE(json.ok()) << json.status();
  const uint64_t n = kGeometry.region_count;
  EXPECT_EQ(*json, absl::StrCat(
                       "{\"format_version\":1,\"uuid\":\"00112233-4455-6677-8899-aabbccddeeff\","
                       "\"generation\":4,\"superblock_slot\":0,\"geometry\":{\"region_size\":4096,"
                       "\"region_count\":",
                       n, ",\"source_size\":", n * 4096, ",\"dest_size\":", n * 4096,
                       "},\"compat_features\":1,"
                       "\"incompat_features\":0,\"finished\":true,\"needs_check\":false,"
                       "\"usage\":{\"block_size\":4096,\"used_blocks\":6,\"total_blocks\":8},"
                       "\"hydrated_regions\":9,\"hydrated_ranges\":[[0,4],[10,10],[",
                       kR - 1, ",", kR, "],[", n - 1, ",", n - 1, "]]}"));
}

TEST(MetadataDumpTest, EmptyAndFullMaps) {
  TestMetadata m(GeometryOf(130));
  auto json = DumpJson(m.view);
  ASSERT_TRUE(json.ok());
  EXPECT_THAT(*json, HasSubstr("\"hydrated_regions\":0,\"hydrated_ranges\":[]}"));
  m.Commit({{0, 130}});
  json = DumpJson(m.view);
  EXPECT_THAT(*json, HasSubstr("\"hydrated_regions\":130,\"hydrated_ranges\":[[0,129]]}"));
}

TEST(MetadataDumpTest, DamagedMetadataIsDataLoss) {
  TestMetadata m;
  m.Commit({{0, 1}});
  m.Overwrite(m.SlotOffset(0, 1) + 100, std::vector<std::byte>(1, std::byte{0xff}));
  EXPECT_EQ(DumpText(m.view).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(DumpJson(m.view).status().message(), HasSubstr("bitmap block 0"));
}

// ---- Fuzzing seeds. Set BLKCLONE_WRITE_FUZZ_SEEDS=1 to (re)write them after a
// deliberate format change; otherwise they must match what this build writes.

const CloneGeometry kSeedGeometry = GeometryOf(100);

struct Seed {
  const char* name;
  std::vector<std::byte> image;
  bool check_ok;
};

std::vector<Seed> MakeSeeds() {
  std::vector<Seed> seeds;
  TestMetadata fresh(kSeedGeometry);
  seeds.push_back({"fresh.img", fresh.device->Contents(), true});

  TestMetadata used(kSeedGeometry);
  used.Commit({{0, 10}, {64, 3}});
  used.Commit({{99, 1}});
  seeds.push_back({"used.img", used.device->Contents(), true});

  FaultInjectingDevice<MemoryDevice> faulty(*used.device);
  used.meta.reset();
  used.meta = *PersistentMetadata::Open(AnyBlockDevice::Borrow(faulty), kSeedGeometry);
  used.meta->MarkHydrated(50, 5);
  used.meta->Seal();
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 1, .count = 1});
  EXPECT_FALSE(used.meta->CommitSealed().ok());
  seeds.push_back({"interrupted.img", used.device->Contents(), true});

  used.meta.reset();
  used.Overwrite(used.SlotOffset(0, 0) + 3000, std::vector<std::byte>(1, std::byte{0x80}));
  EXPECT_FALSE(PersistentMetadata::Open(AnyBlockDevice::Borrow(*used.device), kSeedGeometry).ok());
  seeds.push_back({"needs_check.img", used.device->Contents(), false});

  TestMetadata large(GeometryOf(2 * kR + 10));
  large.Commit({{0, 1}, {kR, kR}, {2 * kR + 9, 1}});
  EXPECT_TRUE(large.meta->SetFinished().ok());
  seeds.push_back({"finished_three_blocks.img", large.device->Contents(), true});
  return seeds;
}

TEST(MetadataFuzzSeedsTest, CheckedInSeedsMatchWhatThisBuildWrites) {
  const std::filesystem::path dir = BLKCLONE_FUZZ_CORPUS_DIR;
  const bool write = std::getenv("BLKCLONE_WRITE_FUZZ_SEEDS") != nullptr;
  for (const Seed& seed : MakeSeeds()) {
    SCOPED_TRACE(seed.name);
    auto device = *MemoryDevice::Create({.size = seed.image.size()});
    device->Fill(0, seed.image);
    AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
    EXPECT_EQ(Check(view).ok, seed.check_ok);
    const std::filesystem::path path = dir / seed.name;
    if (write) {
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char*>(seed.image.data()),
                 static_cast<std::streamsize>(seed.image.size()));
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << path << " is missing; run with BLKCLONE_WRITE_FUZZ_SEEDS=1";
    const std::vector<char> stored((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
    ASSERT_EQ(stored.size(), seed.image.size());
    EXPECT_EQ(std::memcmp(stored.data(), seed.image.data(), stored.size()), 0)
        << "the format changed: regenerate the seeds with BLKCLONE_WRITE_FUZZ_SEEDS=1";
  }
}

}  // namespace
}  // namespace blkclone

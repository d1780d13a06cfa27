// Check, ClearNeedsCheck and the dumps; and the fuzzing seeds, which double as
// a format-stability test: regenerated images must match the checked-in bytes.
#include "blkclone/metadata_check.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_split.h"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blkclone {
namespace {

using internal::kRegionsPerBitmapBlock;
using ::testing::Contains;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

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
  explicit TestMetadata(const CloneGeometry& geometry = kGeometry,
                        uint32_t version = internal::kFormatVersion)
      : device(
            *MemoryDevice::Create({.size = PersistentMetadata::RequiredSize(geometry, version)})),
        meta(*PersistentMetadata::Open(AnyBlockDevice::Borrow(*device), geometry,
                                       {.format_if_blank = true, .format_uuid = kUuid, .format_version = version})) {}

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
  // Slot arrays of three blocks: A1 at metadata block 4, A2 at 7, B1 at 10, B2 at 13.
  // 1. Both copies of the latest version of bitmap block 0 (pair A, generation 2)
  //    fail their checksums.
  std::vector<std::byte> junk(8, std::byte{0x5a});
  m.Overwrite(m.SlotOffset(0, 0) + 1000, junk);
  m.Overwrite(m.SlotOffset(0, 1) + 1000, junk);
  // 2. Garbage in both slots of the pair bitmap block 1 never used (A).
  const std::vector<std::byte> garbage(kMetadataBlockSize, std::byte{0xab});
  m.Overwrite(m.SlotOffset(1, 0), garbage);
  m.Overwrite(m.SlotOffset(1, 1), garbage);
  // 3. Valid copies of bitmap block 2 with a bit set past the last region.
  std::vector<std::byte> stray(kMetadataBlockSize);
  const auto block = std::span<std::byte, kMetadataBlockSize>(stray);
  internal::StoreBitmapWord(block, 1, uint64_t{1} << 40);  // region 2 * kR + 104
  internal::SealBitmapBlock(block, kUuid, 2, header.generation);
  m.Overwrite(m.SlotOffset(2, 2), stray);
  m.Overwrite(m.SlotOffset(2, 3), stray);
  // 4. A superblock slot of the older pair holds something that is not a
  //    superblock: harmless, the current generation has both its copies.
  m.Overwrite(0, std::vector<std::byte>(kMetadataBlockSize, std::byte{'x'}));

  const CheckReport report = Check(m.view);
  EXPECT_FALSE(report.ok);
  EXPECT_THAT(
      report.problems,
      ElementsAre(HasSubstr(absl::StrCat("bitmap block 0 (regions 0..", kR - 1,
                                         "), slot A2 at metadata block 7: fails its "
                                         "checksum")),
                  HasSubstr(absl::StrCat("bitmap block 1 (regions ", kR, "..", 2 * kR - 1,
                                         "), slot A2 at metadata block 8: holds data")),
                  HasSubstr(absl::StrCat("bitmap block 2 (regions ", 2 * kR, "..", 2 * kR + 99,
                                         "), slot B1 at metadata block 12: "
                                         "bits set past the last region"))));
  EXPECT_THAT(report.notes, Contains(HasSubstr("superblock slot 0 (metadata block 0) has no "
                                               "blkclone magic; an older copy")));
}

TEST(MetadataCheckTest, NotesOneDamagedCopyWhoseTwinHoldsTheCommittedVersion) {
  TestMetadata m;
  CommitDumpExample(m);
  m.meta.reset();
  m.Overwrite(m.SlotOffset(0, 1) + 1000, std::vector<std::byte>(8, std::byte{0x5a}));
  m.Overwrite(2 * kMetadataBlockSize + 50, std::vector<std::byte>(1, std::byte{0x5a}));
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.hydrated_regions, 9u);
  EXPECT_THAT(report.notes,
              ElementsAre(HasSubstr("superblock slot 2 (metadata block 2): checksum mismatch; "
                                    "the committed superblock is intact in its twin, slot 3"),
                          HasSubstr(absl::StrCat("bitmap block 0 (regions 0..", kR - 1,
                                                 "), slot A2 at metadata block 7: is not a copy "
                                                 "of the committed version its twin holds; the "
                                                 "committed version is intact in slot A1"))));
  // A read-write open rewrites both: no copy is missing afterwards.
  auto meta = PersistentMetadata::Open(AnyBlockDevice::Borrow(*m.device), kGeometry);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ((*meta)->map().CountSet(), 9u);
  const CheckReport after = Check(m.view);
  EXPECT_TRUE(after.ok);
  EXPECT_THAT(after.notes, Each(Not(HasSubstr("twin"))));
}

TEST(MetadataCheckTest, NotesTracesOfAnInterruptedCommitButPasses) {
  TestMetadata m;
  m.Commit({{0, 1}});
  m.meta.reset();
  FaultInjectingDevice<MemoryDevice> faulty(*m.device);
  auto meta = *PersistentMetadata::Open(AnyBlockDevice::Borrow(faulty), kGeometry);
  meta->MarkHydrated(1, 1);
  meta->Seal();
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 1, .count = 1});  // the second bitmap copy
  ASSERT_FALSE(meta->CommitSealed().ok());
  const CheckReport report = Check(m.view);
  EXPECT_TRUE(report.ok);
  EXPECT_THAT(report.notes, ElementsAre(HasSubstr("slot A1 at metadata block 4: holds generation "
                                                  "2, newer than the superblock's 1")));
  EXPECT_EQ(report.hydrated_regions, 1u);
}

TEST(MetadataCheckTest, NamesEveryFailedSlotWhenNoSuperblockIsUsable) {
  // Found by the metadata fuzzer: a valid format 1 superblock in slot 2, where
  // format 1 has none, beside a damaged slot 0 and a blank slot 1. It is no
  // failure, and used to add an empty reason to the list.
  TestMetadata m(kGeometry, 1);
  m.meta.reset();
  std::vector<std::byte> block(kMetadataBlockSize);
  internal::EncodeSuperblock(m.Header(), std::span<std::byte, kMetadataBlockSize>(block));
  m.Overwrite(2 * kMetadataBlockSize, block);
  m.Overwrite(2000, std::vector<std::byte>(4, std::byte{1}));
  m.Overwrite(kMetadataBlockSize, std::vector<std::byte>(kMetadataBlockSize));
  const CheckReport report = Check(m.view);
  EXPECT_FALSE(report.ok);
  ASSERT_THAT(report.problems, ElementsAre(HasSubstr("no usable superblock: ")));
  const std::string reasons = report.problems[0].substr(report.problems[0].find(": ") + 2);
  const std::vector<std::string> each = absl::StrSplit(reasons, "; ");
  EXPECT_THAT(each, Each(Not(IsEmpty()))) << reasons;
}

TEST(MetadataCheckTest, ClearNeedsCheckClearsTheFlagOnceCheckPasses) {
  TestMetadata m;
  m.Commit({{3, 3}});
  m.meta.reset();
  StoredHeader flagged = m.Header();
  flagged.needs_check = true;
  std::vector<std::byte> block(kMetadataBlockSize);
  internal::EncodeSuperblock(flagged, std::span<std::byte, kMetadataBlockSize>(block));
  for (int copy = 0; copy < 2; ++copy)  // both copies of the current pair
    m.Overwrite((flagged.superblock_slot + copy) * kMetadataBlockSize, block);
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
  EXPECT_EQ((*reopened)->generation(), 2u);  // clearing it was a commit
}

TEST(MetadataCheckTest, ClearNeedsCheckRefusesWhileProblemsRemain) {
  TestMetadata m;
  m.Commit({{3, 3}});
  m.meta.reset();
  for (int slot : {2, 3})  // both copies of the committed version
    m.Overwrite(m.SlotOffset(0, slot) + 2000, std::vector<std::byte>(4, std::byte{1}));
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
  EXPECT_EQ(*text, absl::StrCat("format version: 2\n"
                                "uuid: 00112233-4455-6677-8899-aabbccddeeff\n"
                                "generation: 3 (superblock slot 2)\n"
                                "region size: 4096\n"
                                "region count: ",
                                n, "\n", "source size: ", n * 4096, "\n",
                                "destination size: ", n * 4096, "\n",
                                "compat features: 0x0\n"
                                "incompat features: 0x0\n"
                                "finished: no\n"
                                "needs check: no\n"
                                "metadata blocks: 12/16 used, 4096 bytes each\n"
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
  const auto json = DumpJson(m.view);
  ASSERT_TRUE(json.ok()) << json.status();
  const uint64_t n = kGeometry.region_count;
  EXPECT_EQ(*json, absl::StrCat(
                       "{\"format_version\":2,\"uuid\":\"00112233-4455-6677-8899-aabbccddeeff\","
                       "\"generation\":3,\"superblock_slot\":2,\"geometry\":{\"region_size\":4096,"
                       "\"region_count\":",
                       n, ",\"source_size\":", n * 4096, ",\"dest_size\":", n * 4096,
                       "},\"compat_features\":0,"
                       "\"incompat_features\":0,\"finished\":false,\"needs_check\":false,"
                       "\"usage\":{\"block_size\":4096,\"used_blocks\":12,\"total_blocks\":16},"
                       "\"hydrated_regions\":9,\"hydrated_ranges\":[[0,4],[10,10],[",
                       kR - 1, ",", kR, "],[", n - 1, ",", n - 1, "]]}"));
}

// What a client parsing `dump --json` relies on: valid JSON, and each key with its type.
TEST(MetadataDumpTest, JsonParsesWithEachKeyOfItsType) {
  TestMetadata m;
  CommitDumpExample(m);
  const auto text = DumpJson(m.view);
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_TRUE(nlohmann::json::accept(*text)) << *text;
  const nlohmann::json json = nlohmann::json::parse(*text);
  for (const char* key : {"format_version", "generation", "superblock_slot", "compat_features",
                          "incompat_features", "hydrated_regions"})
    EXPECT_TRUE(json.at(key).is_number_unsigned()) << key;
  EXPECT_EQ(json.at("uuid"), "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(json.at("finished"), false);
  EXPECT_EQ(json.at("needs_check"), false);
  for (const char* key : {"region_size", "region_count", "source_size", "dest_size"})
    EXPECT_TRUE(json.at("geometry").at(key).is_number_unsigned()) << key;
  EXPECT_EQ(json.at("geometry").at("region_count"), kGeometry.region_count);
  for (const char* key : {"block_size", "used_blocks", "total_blocks"})
    EXPECT_TRUE(json.at("usage").at(key).is_number_unsigned()) << key;
  uint64_t hydrated = 0;
  for (const nlohmann::json& range : json.at("hydrated_ranges")) {
    ASSERT_EQ(range.size(), 2u);
    hydrated += range[1].get<uint64_t>() - range[0].get<uint64_t>() + 1;
  }
  EXPECT_EQ(json.at("hydrated_regions"), hydrated);
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
  for (int slot : {2, 3})  // both copies of the committed version
    m.Overwrite(m.SlotOffset(0, slot) + 100, std::vector<std::byte>(1, std::byte{0xff}));
  EXPECT_EQ(DumpText(m.view).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(DumpJson(m.view).status().message(), HasSubstr("bitmap block 0"));
}

// ---- Fuzzing seeds. Set BLKCLONE_WRITE_FUZZ_SEEDS=1 to (re)write them after a
// deliberate format change; otherwise they must match what this build writes.

const CloneGeometry kSeedGeometry = GeometryOf(100);

struct Seed {
  std::string name;
  std::vector<std::byte> image;
  bool check_ok;
};

// Fresh, used, interrupted and needs_check metadata of `version`, named with `prefix`.
void AddSeeds(std::vector<Seed>& seeds, const std::string& prefix, uint32_t version) {
  TestMetadata fresh(kSeedGeometry, version);
  seeds.push_back({prefix + "fresh.img", fresh.device->Contents(), true});

  TestMetadata used(kSeedGeometry, version);
  used.Commit({{0, 10}, {64, 3}});
  used.Commit({{99, 1}});
  seeds.push_back({prefix + "used.img", used.device->Contents(), true});

  FaultInjectingDevice<MemoryDevice> faulty(*used.device);
  used.meta.reset();
  used.meta = *PersistentMetadata::Open(AnyBlockDevice::Borrow(faulty), kSeedGeometry,
                                        {.format_version = version});
  used.meta->MarkHydrated(50, 5);
  used.meta->Seal();
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 1, .count = 1});
  EXPECT_FALSE(used.meta->CommitSealed().ok());
  seeds.push_back({prefix + "interrupted.img", used.device->Contents(), true});

  used.meta.reset();
  // Every copy of the committed version of the only bitmap block (pair A).
  for (int slot = 0; slot < internal::CopiesIn(version); ++slot)
    used.Overwrite(used.SlotOffset(0, slot) + 3000, std::vector<std::byte>(1, std::byte{0x80}));
  EXPECT_FALSE(PersistentMetadata::Open(AnyBlockDevice::Borrow(*used.device), kSeedGeometry,
                                        {.format_version = version})
                   .ok());
  seeds.push_back({prefix + "needs_check.img", used.device->Contents(), false});
}

std::vector<Seed> MakeSeeds() {
  std::vector<Seed> seeds;
  AddSeeds(seeds, "", internal::kFormatVersion);
  AddSeeds(seeds, "format1_", 1);
  TestMetadata large(GeometryOf(2 * kR + 10));
  large.Commit({{0, 1}, {kR, kR}, {2 * kR + 9, 1}});
  large.Commit({{0, 2 * kR + 10}});  // only a fully hydrated clone finishes
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

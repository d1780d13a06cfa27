// CrashStateChecker: reopen, verify, write, flush, crash again, verify.
#include "crash_state_checker.hpp"

#include <malloc.h>

#include <chrono>
#include <cstring>
#include <random>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "gtest/gtest.h"
#include "test_bytes.hpp"

namespace blkclone::testing {
namespace {

using Bytes = std::vector<std::byte>;
using Guard = ReadOnlyGuard<MemoryDevice>;
using Copier = BufferedCopier<Guard, MemoryDevice>;
using ReplayClone = Clone<Guard, MemoryDevice, Copier>;

// Values of the restart's writes: above any a workload uses.
constexpr int64_t kRestartValue = int64_t{1} << 40;

// A clone over devices holding a crash state's images.
struct Opened {
  std::unique_ptr<MemoryDevice> meta, dest;
  std::unique_ptr<PersistentMetadata> metadata;
  std::unique_ptr<Copier> copier;
  std::unique_ptr<ReplayClone> clone;  // declared last: destroyed first
};

std::string Open(const Bytes& meta_image, const Bytes& dest_image, Guard& source,
                 const CloneGeometry& geometry, bool read_only, Opened& opened) {
  opened.meta = *MemoryDevice::Create({.size = meta_image.size(), .simulate_crashes = true});
  opened.meta->Fill(0, meta_image);
  AnyBlockDevice meta_any = AnyBlockDevice::Borrow(*opened.meta);
  const CheckReport report = Check(meta_any);
  if (!report.ok)
    return absl::StrCat("Check failed: ", report.problems.empty() ? "" : report.problems[0]);
  auto metadata = PersistentMetadata::Open(AnyBlockDevice::Borrow(*opened.meta), geometry,
                                           {.read_only = read_only, .format_if_blank = false});
  if (!metadata.ok())
    return absl::StrCat("the metadata did not open without repair: ", metadata.status().ToString());
  opened.metadata = *std::move(metadata);
  opened.dest = *MemoryDevice::Create({.size = dest_image.size(), .simulate_crashes = true});
  opened.dest->Fill(0, dest_image);
  opened.copier = std::make_unique<Copier>(
      source, *opened.dest,
      BufferedCopierOptions{.chunk_size = geometry.region_size, .max_in_flight = 1});
  // Commits only when asked: the second crash must not race a periodic one.
  opened.clone = *ReplayClone::Create(source, *opened.dest, *opened.copier, *opened.metadata,
                                      {.commit_interval = std::chrono::hours(1)});
  return "";
}

absl::string_view AsText(const Bytes& bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string Where(uint64_t block, const CloneGeometry& geometry) {
  return absl::StrCat("block ", block, " (region ", block * kCrashBlock / geometry.region_size,
                      ")");
}

bool Holds(const UserOp& write, uint64_t block, const std::byte* content) {
  std::byte expected[kCrashBlock];
  FillBlock(write.value, block, expected);
  return std::memcmp(expected, content, kCrashBlock) == 0;
}

// A write of `blocks` blocks from `first`, with `flags`.
UserOp RestartWrite(uint64_t first, uint64_t blocks, uint8_t flags, int64_t value) {
  return UserOp{.op = Op::kWrite,
                .flags = flags,
                .first_block = first,
                .blocks = blocks,
                .value = kRestartValue + value};
}

}  // namespace

CrashStateChecker::CrashStateChecker(std::span<const std::byte> source,
                                     const CloneGeometry& geometry)
    : geometry_(geometry), source_memory_(*MemoryDevice::Create({.size = source.size()})) {
  source_memory_->FillData(source);
  source_ = std::make_unique<Guard>(*source_memory_, [](const Request& r) {
    ADD_FAILURE() << "the source received a " << OpName(r.op);
  });
}

uint64_t CrashStateChecker::CheckAll(const std::vector<Recording>& recordings,
                                     const BlockOracle& oracle, uint64_t stride,
                                     std::mt19937_64& rng, std::string& error) {
  uint64_t states = 0;
  const std::vector<uint64_t> ticks = CrashTicks(recordings);
  for (size_t i = 0; i < ticks.size(); i += stride) {
    const uint64_t tick = ticks[i];
    for (Landing landing :
         {Landing::kNone, Landing::kAll, Landing::kRandom, Landing::kRandomTorn}) {
      const std::vector<Bytes> images = CrashImages(recordings, tick, landing, rng);
      distinct_.insert(absl::HashOf(AsText(images[0]), AsText(images[1])));
      ++states;
      error = Check(images[0], images[1], oracle, tick, rng());
      if (!error.empty()) {
        absl::StrAppend(&error, "\n  (crash at tick ", tick, ", landing ",
                        static_cast<int>(landing), ")");
        return states;
      }
    }
  }
  return states;
}

std::string CrashStateChecker::Check(const Bytes& meta_image, const Bytes& dest_image,
                                     const BlockOracle& oracle, uint64_t tick, uint64_t seed) {
  Bytes expected(geometry_.source_size);
  std::vector<UserOp> unflushed;
  Bytes meta_after, dest_after;
  {
    Opened opened;
    if (std::string error = Open(meta_image, dest_image, *source_, geometry_, false, opened);
        !error.empty())
      return error;
    ReplayClone& clone = *opened.clone;
    if (absl::Status read = ReadAt(clone, 0, expected); !read.ok())
      return absl::StrCat("reading the reopened clone: ", read.ToString());
    const uint64_t blocks = geometry_.source_size / kCrashBlock;
    for (uint64_t b = 0; b < blocks; ++b) {
      if (!oracle.CrashAllows(b, tick, expected.data() + b * kCrashBlock))
        return absl::StrCat(Where(b, geometry_), " holds data the contract does not allow:",
                            oracle.Explain(b, expected.data() + b * kCrashBlock));
    }

    // Restarted: write, flush, write once more, lose power.
    std::mt19937_64 rng(seed);
    const uint64_t per_region = geometry_.region_size / kCrashBlock;
    const uint64_t regions = geometry_.region_count;
    const RegionMap& map = opened.metadata->map();
    auto unhydrated = [&](uint64_t limit) {  // a random unhydrated region below `limit`
      const uint64_t from = rng() % limit;
      uint64_t r = map.FindNextUnset(from);
      if (r >= limit) r = map.FindNextUnset(0);
      return r < limit ? r : rng() % limit;
    };
    const uint64_t u = unhydrated(regions);
    const uint64_t u_blocks = std::min(per_region, blocks - u * per_region);
    const uint64_t partial = 1 + rng() % std::max<uint64_t>(1, u_blocks - 1);
    const uint64_t v = unhydrated(regions - 1);  // the short last region never qualifies
    auto anywhere = [&](uint64_t n) { return rng() % (blocks - n + 1); };
    const uint64_t small = 1 + rng() % 4;
    const std::vector<UserOp> flushed = {
        RestartWrite(u * per_region + rng() % (u_blocks - partial + 1), partial, kNoFlags, 0),
        RestartWrite(v * per_region, per_region, kNoFlags, 1),
        RestartWrite(anywhere(small), small, kFua, 2)};
    unflushed.push_back(RestartWrite(anywhere(small), small, kNoFlags, 3));
    auto write = [&](const UserOp& op) {
      return WriteAt(clone, op.first_block * kCrashBlock, WriteData(op), op.flags);
    };
    for (const UserOp& op : flushed) {
      if (absl::Status status = write(op); !status.ok())
        return absl::StrCat("a write after reopening failed: ", status.ToString());
      const Bytes data = WriteData(op);
      std::copy(data.begin(), data.end(), expected.begin() + op.first_block * kCrashBlock);
    }
    if (absl::Status status = Flush(clone); !status.ok())
      return absl::StrCat("a flush after reopening failed: ", status.ToString());
    if (absl::Status status = write(unflushed[0]); !status.ok())
      return absl::StrCat("a write after reopening failed: ", status.ToString());
    opened.meta->SimulateCrash();
    opened.dest->SimulateCrash();
    meta_after = opened.meta->Contents();
    dest_after = opened.dest->Contents();
  }  // closing commits to devices already copied: it changes nothing checked
  if (std::string error = CheckRestart(meta_after, dest_after, expected, unflushed); !error.empty())
    return absl::StrCat("after reopening, writing, flushing and crashing again: ", error);
  return "";
}

std::string CrashStateChecker::CheckRestart(const Bytes& meta_image, const Bytes& dest_image,
                                            const Bytes& expected,
                                            const std::vector<UserOp>& unflushed) {
  Opened opened;
  if (std::string error = Open(meta_image, dest_image, *source_, geometry_, true, opened);
      !error.empty())
    return error;
  Bytes content(geometry_.source_size);
  if (absl::Status read = ReadAt(*opened.clone, 0, content); !read.ok())
    return absl::StrCat("reading: ", read.ToString());
  for (uint64_t b = 0; b < geometry_.source_size / kCrashBlock; ++b) {
    const std::byte* got = content.data() + b * kCrashBlock;
    if (std::memcmp(got, expected.data() + b * kCrashBlock, kCrashBlock) == 0) continue;
    bool ok = false;
    for (const UserOp& op : unflushed) {
      ok = ok || (b >= op.first_block && b < op.first_block + op.blocks && Holds(op, b, got));
    }
    if (!ok) return absl::StrCat(Where(b, geometry_), " lost a flushed write or holds stale data");
  }
  return "";
}

CrashBench::CrashBench(uint64_t size, uint64_t region_size)
    : source_data(SparseBytes(size, region_size, 1)),
      source_memory(*MemoryDevice::Create({.size = size})),
      source(*source_memory,
             [](const Request& r) { ADD_FAILURE() << "the source received a " << OpName(r.op); }),
      geometry(*MakeCloneGeometry(source_memory->info(), source_memory->info(), region_size)),
      checker(source_data, geometry) {
  source_memory->FillData(source_data);
  // Each state allocates and frees device images of a few hundred KiB: kept
  // in the heap rather than mapped afresh each time, the replay runs several
  // times faster.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

CrashBench::Devices CrashBench::NewDevices(uint64_t seed) const {
  const uint64_t meta_size = (PersistentMetadata::RequiredSize(geometry) + 4095) / 4096 * 4096;
  Devices devices{.meta = *MemoryDevice::Create({.size = meta_size}),
                  .dest = *MemoryDevice::Create({.size = geometry.source_size})};
  devices.dest->Fill(0, RandomBytes(geometry.source_size, static_cast<uint32_t>(seed + 77)));
  auto formatted = PersistentMetadata::Open(AnyBlockDevice::Borrow(*devices.meta), geometry,
                                            {.format_if_blank = true});
  EXPECT_TRUE(formatted.ok()) << formatted.status();
  return devices;
}

}  // namespace blkclone::testing

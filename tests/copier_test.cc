// BufferedCopier: exact copies, bounded concurrency, errors, and shutdown.
#include "blkclone/buffered_copier.hpp"

#include <atomic>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::RandomBytes;

static_assert(Copier<BufferedCopier<MemoryDevice, MemoryDevice>>);

struct CopyResult {
  CopyJob job;
  std::atomic<int> completions{0};
  absl::Status status;
};

void Start(auto& copier, CopyResult& result, uint64_t offset, uint64_t length) {
  result.job.offset = offset;
  result.job.length = length;
  result.job.context = &result;
  result.job.on_complete = [](CopyJob& job, absl::Status status) {
    auto* r = static_cast<CopyResult*>(job.context);
    r->status = std::move(status);
    r->completions.fetch_add(1);
  };
  copier.Copy(result.job);
}

// A source holding random `data` from `seed`, and an empty destination.
struct Pair {
  std::unique_ptr<MemoryDevice> source, dest;
  std::vector<std::byte> data;
};
Pair FilledPair(uint64_t size, uint32_t seed) {
  Pair pair{*MemoryDevice::Create({.size = size}), *MemoryDevice::Create({.size = size}),
            RandomBytes(size, seed)};
  pair.source->Fill(0, pair.data);
  return pair;
}

TEST(BufferedCopierTest, CopiesExactlyTheRangeInManyChunks) {
  constexpr uint64_t kSize = 4 << 20;
  auto [source, dest, data] = FilledPair(kSize, 1);
  BufferedCopier copier(*source, *dest, {.chunk_size = 64 << 10, .max_in_flight = 2});
  CopyResult result;
  Start(copier, result, 4096, kSize - 3 * 4096);  // 63 chunks and a partial one
  ASSERT_EQ(result.completions.load(), 1);
  ASSERT_TRUE(result.status.ok()) << result.status;
  const std::vector<std::byte> copied = dest->Contents();
  EXPECT_TRUE(std::equal(copied.begin() + 4096, copied.end() - 2 * 4096, data.begin() + 4096));
  EXPECT_EQ(copied[4095], std::byte{0});
  EXPECT_EQ(copied[kSize - 2 * 4096], std::byte{0});
}

// Zero detection: an all-zero chunk is zeroed thinly (a hole on the memory
// device), never written, and reads back as zeroes over stale content.
TEST(BufferedCopierTest, ZeroChunksAreZeroedNotWritten) {
  constexpr uint64_t kSize = 64 << 10;
  for (bool detect : {true, false}) {
    auto source = *MemoryDevice::Create({.size = kSize});
    auto dest = *MemoryDevice::Create({.size = kSize});
    std::vector<std::byte> data = RandomBytes(kSize, 3);
    std::fill(data.begin() + 16384, data.begin() + 32768, std::byte{0});  // chunks 4 and 5
    data[40000] = std::byte{0};                                           // not a whole chunk
    source->Fill(0, data);
    dest->Fill(0, RandomBytes(kSize, 4));
    BufferedCopier copier(*source, *dest, {.chunk_size = 8192, .detect_zeroes = detect});
    CopyResult result;
    Start(copier, result, 0, kSize);
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(dest->Contents(), data);
    EXPECT_EQ(copier.zeroed_chunks(), detect ? 2u : 0u);
    const std::vector<Extent> holes = {{0, 16384, false}, {16384, 16384, true},
                                       {32768, kSize - 32768, false}};
    const std::vector<Extent> dense = {{0, kSize, false}};
    EXPECT_EQ(*DescribeAllocation(*dest, 0, kSize), detect ? holes : dense);
  }
}

// One long job keeps every buffer busy: its chunks are read side by side.
TEST(BufferedCopierTest, RunsTheChunksOfOneJobSideBySide) {
  constexpr uint64_t kSize = 1 << 20;
  auto [source, dest, data] = FilledPair(kSize, 8);
  DelayDevice<MemoryDevice> slow(*source, {.max_delay = std::chrono::milliseconds(2), .seed = 1});
  CountingDevice<DelayDevice<MemoryDevice>> counted(slow);
  CopyResult result;
  {
    BufferedCopier copier(counted, *dest, {.chunk_size = 16384, .max_in_flight = 4});
    Start(copier, result, 0, kSize);
  }  // waits for the job
  ASSERT_EQ(result.completions.load(), 1);
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(dest->Contents(), data);
  const Counts counts = counted.Snapshot();
  EXPECT_EQ(counts.submitted[Op::kRead], kSize / 16384);
  EXPECT_EQ(counts.max_in_flight[Op::kRead], 4u);
}

// A failed chunk ends its job with its error; the chunks not yet started are
// not read.
TEST(BufferedCopierTest, AFailedChunkEndsItsJob) {
  constexpr uint64_t kSize = 1 << 20;
  auto source = *MemoryDevice::Create({.size = kSize});
  auto dest = *MemoryDevice::Create({.size = kSize});
  FaultInjectingDevice<MemoryDevice> faulty(*source);
  faulty.AddRule({.ops = {Op::kRead}, .range = ByteRange{.offset = 65536, .length = 512}});
  CountingDevice<FaultInjectingDevice<MemoryDevice>> counted(faulty);
  BufferedCopier copier(counted, *dest, {.chunk_size = 16384, .max_in_flight = 2});
  CopyResult result;
  Start(copier, result, 0, kSize);
  ASSERT_EQ(result.completions.load(), 1);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(counted.Snapshot().submitted[Op::kRead], 5u) << "chunks read after the failure";
}

TEST(BufferedCopierTest, ReportsSourceErrorsAndLeavesTheRestUntouched) {
  auto source = *MemoryDevice::Create({.size = 1 << 20});
  auto dest = *MemoryDevice::Create({.size = 1 << 20});
  BufferedCopier copier(*source, *dest);
  CopyResult result;
  Start(copier, result, 0, 2 << 20);  // beyond the source: its read fails
  ASSERT_EQ(result.completions.load(), 1);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kOutOfRange);
}

TEST(BufferedCopierTest, QueuesJobsBeyondItsSlotsAndCompletesEachOnce) {
  constexpr int kJobs = 64;
  auto source = *MemoryDevice::Create({.size = kJobs * 8192});
  auto dest = *MemoryDevice::Create({.size = kJobs * 8192});
  source->Fill(0, RandomBytes(kJobs * 8192, 2));
  std::vector<CopyResult> results(kJobs);
  {
    BufferedCopier copier(*source, *dest, {.chunk_size = 4096, .max_in_flight = 3});
    for (int i = 0; i < kJobs; ++i) Start(copier, results[i], i * 8192, 8192);
  }
  for (const CopyResult& r : results) {
    EXPECT_EQ(r.completions.load(), 1);
    EXPECT_TRUE(r.status.ok());
  }
  EXPECT_EQ(dest->Contents(), source->Contents());
}

// Whatever code a device fails with, inline, the job completes once with it.
TEST(BufferedCopierTest, ReportsEveryErrorCodeOfEitherDevice) {
  auto source_memory = *MemoryDevice::Create({.size = 1 << 20});
  auto dest_memory = *MemoryDevice::Create({.size = 1 << 20});
  for (int code = 1; code <= 16; ++code) {
    for (bool failing_source : {true, false}) {
      SCOPED_TRACE(absl::StrCat(absl::StatusCodeToString(absl::StatusCode(code)),
                                failing_source ? " from the source" : " from the destination"));
      FaultInjectingDevice source(*source_memory);
      FaultInjectingDevice dest(*dest_memory);
      (failing_source ? source : dest)
          .AddRule({.count = 1, .error = absl::Status(absl::StatusCode(code), "injected")});
      auto copier = std::make_unique<BufferedCopier<FaultInjectingDevice<MemoryDevice>,
                                                    FaultInjectingDevice<MemoryDevice>>>(
          source, dest, BufferedCopierOptions{.chunk_size = 64 << 10});
      CopyResult result;
      Start(*copier, result, 0, 256 << 10);
      EXPECT_EQ(result.completions.load(), 1);
      EXPECT_EQ(result.status.code(), absl::StatusCode(code));
      // A dropped job would keep the copier's destructor waiting forever.
      if (result.completions.load() == 0) (void)copier.release();
    }
  }
}

}  // namespace
}  // namespace blkclone

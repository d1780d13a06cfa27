// Many submitters on shared regions with hydrations in flight, over devices
// that complete late, out of order and on their own threads; the final content
// is checked block by block against what each thread wrote (and run under
// ThreadSanitizer in CI).
#include <atomic>
#include <cstring>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "bounded_wait.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using testing::BoundedThread;

constexpr uint64_t kBlock = 512;
constexpr uint64_t kRegion = 16 << 10;
constexpr uint64_t kSharedRegions = 48;  // every writer writes into each of them
constexpr uint64_t kDiscardRegions = 8;  // one thread's own, discarded and rewritten
constexpr uint64_t kSize = (kSharedRegions + kDiscardRegions) * kRegion;
constexpr int kWriters = 4;
constexpr int kOpsPerThread = 600;

std::vector<std::byte> Pattern(uint32_t value) {
  std::vector<std::byte> block(kBlock);
  for (uint64_t i = 0; i < kBlock; i += 4) std::memcpy(&block[i], &value, 4);
  return block;
}

TEST(CloneStressTest, ConcurrentSubmittersOnSharedRegionsMatchTheModel) {
  auto source_memory = *MemoryDevice::Create({.size = kSize});
  std::vector<std::byte> source_data(kSize);
  std::mt19937 rng(3);
  for (auto& b : source_data) b = std::byte(rng());
  source_memory->Fill(0, source_data);
  auto dest_memory = *MemoryDevice::Create({.size = kSize});
  ReadOnlyGuard<MemoryDevice> guard(*source_memory, [](const Request& r) {
    ADD_FAILURE() << "the source received a " << OpName(r.op);
  });
  using Source = DelayDevice<ReadOnlyGuard<MemoryDevice>>;
  using Dest = DelayDevice<MemoryDevice>;
  Source source(guard, {.max_delay = std::chrono::microseconds(300), .seed = 1});
  Dest dest(*dest_memory, {.max_delay = std::chrono::microseconds(300), .seed = 2});
  BufferedCopier<Source, Dest> copier(source, dest, {.chunk_size = 8192, .max_in_flight = 4});
  InMemoryMetadata metadata(*MakeCloneGeometry(source.info(), dest.info(), kRegion));
  auto clone = *Clone<Source, Dest, BufferedCopier<Source, Dest>>::Create(
      source, dest, copier, metadata, {.commit_interval = std::chrono::milliseconds(5)});

  // Block b of the shared regions belongs to writer b % kWriters; the last
  // thread owns the discard regions. 0 means "still the source's data".
  const uint64_t shared_blocks = kSharedRegions * kRegion / kBlock;
  std::vector<uint32_t> expected(kSize / kBlock, 0);
  std::vector<uint8_t> unknown(kSize / kBlock, 0);
  std::atomic<int> failures{0};

  auto check = [&](uint64_t block, const std::vector<std::byte>& got) {
    if (unknown[block]) return;
    const bool ok = expected[block] == 0
                        ? std::memcmp(got.data(), &source_data[block * kBlock], kBlock) == 0
                        : got == Pattern(expected[block]);
    if (!ok) failures.fetch_add(1);
  };

  std::deque<BoundedThread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 r(100 + t);
      std::vector<std::byte> got(kBlock);
      for (int i = 0; i < kOpsPerThread; ++i) {
        const uint64_t block = (r() % (shared_blocks / kWriters)) * kWriters + t;
        const uint32_t value = (uint32_t(t) << 24) | uint32_t(i + 1);
        switch (r() % 8) {
          case 0:
          case 1:
            ASSERT_TRUE(ReadAt(*clone, block * kBlock, got).ok());
            check(block, got);
            break;
          case 2:
            ASSERT_TRUE(Flush(*clone).ok());
            break;
          default:
            ASSERT_TRUE(
                WriteAt(*clone, block * kBlock, Pattern(value), r() % 5 == 0 ? kFua : kNoFlags)
                    .ok());
            expected[block] = value;
        }
      }
    });
  }
  threads.emplace_back([&] {
    std::mt19937 r(99);
    const uint64_t first_block = shared_blocks;
    const uint64_t blocks = kDiscardRegions * kRegion / kBlock;
    for (int i = 0; i < kOpsPerThread / 2; ++i) {
      if (r() % 4 == 0) {
        const uint64_t region = kSharedRegions + r() % kDiscardRegions;
        ASSERT_TRUE(Discard(*clone, region * kRegion, kRegion).ok());
        for (uint64_t b = 0; b < kRegion / kBlock; ++b) unknown[region * kRegion / kBlock + b] = 1;
      } else {
        const uint64_t block = first_block + r() % blocks;
        const uint32_t value = 0xff000000u | uint32_t(i + 1);
        ASSERT_TRUE(WriteAt(*clone, block * kBlock, Pattern(value)).ok());
        expected[block] = value;
        unknown[block] = 0;
      }
    }
  });
  for (BoundedThread& thread : threads) thread.Join();

  EXPECT_EQ(failures.load(), 0) << "reads disagreed with what their thread had written";
  std::vector<std::byte> got(kBlock);
  for (uint64_t block = 0; block < kSize / kBlock; ++block) {
    ASSERT_TRUE(ReadAt(*clone, block * kBlock, got).ok());
    check(block, got);
  }
  EXPECT_EQ(failures.load(), 0) << "final content differs from the model";
  ASSERT_TRUE(clone->Close().ok());  // waits for every completion to return
  EXPECT_EQ(clone->hydrating_regions(), 0u);
  EXPECT_EQ(clone->active_requests(), 0u);
  EXPECT_EQ(guard.violations(), 0u);
  // Every region a writer touched is hydrated and, after Close, committed.
  std::vector<bool> committed = metadata.CommittedRegions();
  for (uint64_t region = 0; region < kSharedRegions; ++region) {
    bool written = false;
    for (uint64_t b = 0; b < kRegion / kBlock; ++b)
      written = written || expected[region * kRegion / kBlock + b] != 0;
    if (written) {
      EXPECT_TRUE(committed[region]) << "region " << region;
    }
  }
}

}  // namespace
}  // namespace blkclone

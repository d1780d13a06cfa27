// SourceAllocation: answers asked once per window, kept in bounded memory,
// coarsened rather than wrong, and all data once the source cannot tell.
#include "blkclone/source_allocation.hpp"

#include <memory>
#include <random>
#include <vector>

#include "blkclone/extents.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"
#include "rapidcheck/gtest.h"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

constexpr uint64_t kWindow = 64 << 10;
constexpr uint64_t kSize = 4 * kWindow;

class SourceAllocationTest : public ::testing::Test {
 protected:
  // Data at every multiple of `stride` (one 512-byte block), the rest holes.
  void SetUp() override { Make(8192); }
  void Make(uint64_t stride, size_t max_windows = 64, size_t max_extents = 4096) {
    allocation_.reset();
    memory_ = *MemoryDevice::Create({.size = kSize});
    for (uint64_t at = 0; at < kSize; at += stride) memory_->Fill(at, testing::RandomBytes(512, 1));
    counted_ = std::make_unique<CountingDevice<MemoryDevice>>(*memory_);
    faulty_ = std::make_unique<FaultInjectingDevice<CountingDevice<MemoryDevice>>>(*counted_);
    allocation_ = std::make_unique<SourceAllocation>(
        kSize, 512, 4096, [this](Request& r) { faulty_->Submit(r); },
        [this](const absl::Status& cause) {
          ++failures_;
          failure_ = cause;
        },
        SourceAllocationOptions{
            .window = kWindow, .max_windows = max_windows, .max_extents_per_window = max_extents});
  }
  uint64_t Queries() { return counted_->Snapshot().submitted[Op::kBlockStatus]; }
  std::vector<Extent> Known(uint64_t offset, uint64_t length) {
    allocation_->WaitUntilKnown(offset);
    std::vector<Extent> out;
    EXPECT_TRUE(allocation_->Lookup(offset, length, out));
    return out;
  }

  std::unique_ptr<MemoryDevice> memory_;
  std::unique_ptr<CountingDevice<MemoryDevice>> counted_;
  std::unique_ptr<FaultInjectingDevice<CountingDevice<MemoryDevice>>> faulty_;
  std::unique_ptr<SourceAllocation> allocation_;
  int failures_ = 0;
  absl::Status failure_;
};

TEST_F(SourceAllocationTest, AsksOncePerWindowAndAnswersFromWhatItKeeps) {
  EXPECT_EQ(Known(0, 8192),
            (std::vector<Extent>{{0, 512, false}, {512, 8192 - 512, true}}));
  EXPECT_EQ(Known(kWindow + 8192, 4096), (std::vector<Extent>{{kWindow + 8192, 512, false},
                                                               {kWindow + 8704, 3584, true}}));
  EXPECT_EQ(*allocation_->HoleEnd(1024), 8192u);
  EXPECT_EQ(*allocation_->HoleEnd(8192), 8192u) << "data: no hole there";
  EXPECT_EQ(Queries(), 2u);
}

TEST_F(SourceAllocationTest, AnUnknownWindowIsAskedForAndReportedUnknown) {
  std::vector<Extent> out;
  // The memory device answers inside the call: known right after it.
  EXPECT_FALSE(allocation_->Lookup(2 * kWindow, 512, out));
  EXPECT_TRUE(allocation_->Lookup(2 * kWindow, 512, out));
  EXPECT_FALSE(allocation_->Lookup(kWindow - 512, 1024, out)) << "crosses a window end";
  EXPECT_EQ(Queries(), 1u);
}

TEST_F(SourceAllocationTest, KeepsAtMostItsWindowsAndAsksAgainForOnesItDropped) {
  Make(8192, /*max_windows=*/2);
  for (uint64_t w = 0; w < 4; ++w) Known(w * kWindow, 512);
  EXPECT_EQ(Queries(), 4u);
  Known(3 * kWindow, 512);
  EXPECT_EQ(Queries(), 4u) << "the latest window was dropped";
  Known(0, 512);
  EXPECT_EQ(Queries(), 5u) << "the oldest window was kept";
}

TEST_F(SourceAllocationTest, TooManyExtentsAreCoarsenedNeverMadeHoles) {
  Make(1024, 64, /*max_extents=*/16);
  // Every other block is data: 128 extents per window, 4 KiB units keep one.
  EXPECT_EQ(Known(0, kWindow), (std::vector<Extent>{{0, kWindow, false}}));
  Make(16384, 64, /*max_extents=*/16);
  EXPECT_EQ(Known(0, 16384),
            (std::vector<Extent>{{0, 512, false}, {512, 16384 - 512, true}}));
}

TEST_F(SourceAllocationTest, AFailureMakesEverythingDataAndIsToldOnce) {
  faulty_->AddRule({.ops = {Op::kBlockStatus}, .error = absl::UnavailableError("gone")});
  EXPECT_EQ(Known(0, 8192), (std::vector<Extent>{{0, 8192, false}}));
  EXPECT_EQ(Known(kWindow, 8192), (std::vector<Extent>{{kWindow, 8192, false}}));
  EXPECT_FALSE(allocation_->enabled());
  EXPECT_EQ(*allocation_->HoleEnd(1024), 1024u);
  EXPECT_EQ(failures_, 1);
  EXPECT_EQ(failure_.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(faulty_->counters().injected[Op::kBlockStatus], 1u) << "asked again after failing";
}

TEST_F(SourceAllocationTest, WithoutAWayToAskEverythingIsData) {
  SourceAllocation allocation(kSize, 512, 4096, nullptr, nullptr, {});
  EXPECT_FALSE(allocation.enabled());
  std::vector<Extent> out;
  EXPECT_TRUE(allocation.Lookup(0, kSize, out));
  EXPECT_EQ(out, (std::vector<Extent>{{0, kSize, false}}));
}

// Whatever the layout, block size, window and bound: a hole never covers
// data, and every answer covers its range exactly.
RC_GTEST_PROP(SourceAllocationProperty, NeverReportsAHoleOverData, ()) {
  const uint64_t blocks = *rc::gen::inRange<uint64_t>(1, 512);
  const uint64_t size = blocks * 512;
  auto memory = *MemoryDevice::Create({.size = size});
  const auto data = *rc::gen::container<std::vector<bool>>(blocks, rc::gen::arbitrary<bool>());
  for (uint64_t b = 0; b < blocks; ++b) {
    if (data[b]) memory->Fill(b * 512, testing::RandomBytes(512, static_cast<uint32_t>(b)));
  }
  const uint64_t block = 512u << *rc::gen::inRange(0, 3);
  const uint64_t coarse = block << *rc::gen::inRange(0, 4);
  SourceAllocation allocation(
      size, block, coarse, [&](Request& r) { memory->Submit(r); }, nullptr,
      {.window = coarse * *rc::gen::inRange<uint64_t>(1, 16),
       .max_windows = *rc::gen::inRange<size_t>(1, 4),
       .max_extents_per_window = *rc::gen::inRange<size_t>(1, 32)});
  for (int i = 0; i < 8; ++i) {
    const uint64_t first = *rc::gen::inRange<uint64_t>(0, blocks);
    const uint64_t window_end =
        std::min(size, (first * 512 / allocation.window() + 1) * allocation.window());
    const uint64_t length = 512 * *rc::gen::inRange<uint64_t>(1, (window_end - first * 512) / 512 + 1);
    allocation.WaitUntilKnown(first * 512);
    std::vector<Extent> out;
    if (!allocation.Lookup(first * 512, length, out)) continue;  // dropped meanwhile
    RC_ASSERT(CheckExtents(out, first * 512, length, 512).ok());
    for (const Extent& extent : out) {
      if (!extent.hole) continue;
      for (uint64_t b = extent.offset / 512; b < extent.end() / 512; ++b) RC_ASSERT(!data[b]);
    }
  }
}

}  // namespace
}  // namespace blkclone

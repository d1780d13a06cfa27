// A GoogleTest suite that checks a BlockDevice model against the contract of
// block_device.hpp. Every blkclone backend passes it; applications run it on
// their own devices by writing a factory and instantiating the suite:
//
//   struct MyFactory {
//     using Device = MyDevice;
//     // true if a simulated crash loses writes that were not flushed
//     static constexpr bool kCrashLosesUnflushed = false;
//     // zero-filled and writable; nullptr skips the suite (say why on stderr)
//     std::unique_ptr<Device> Create(uint64_t size);
//     // Simulates power loss: only what was made durable must remain.
//     std::unique_ptr<Device> Crash(std::unique_ptr<Device> device);
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mine, DeviceConformanceTest,
//                                  ::testing::Types<MyFactory>);
//
// The size passed to Create is a multiple of 64 KiB; the device may round its
// block size as it likes (the suite reads info()).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/aligned_buffer.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/extents.hpp"
#include "blkclone/sync_io.hpp"
#include "gtest/gtest.h"

namespace blkclone::testing {

// A buffer aligned for any device (4 KiB), filled with a pattern from `seed`.
class PatternBuffer : public AlignedBuffer {
 public:
  explicit PatternBuffer(size_t size, uint32_t seed = 0) : AlignedBuffer(size, 4096) {
    std::mt19937 rng(seed);
    for (std::byte& b : span()) b = std::byte(rng() & 0xff);
  }
  bool operator==(const PatternBuffer& other) const {
    return size() == other.size() && std::memcmp(data(), other.data(), size()) == 0;
  }
};

template <class Factory>
class DeviceConformanceTest : public ::testing::Test {
 protected:
  using Device = typename Factory::Device;
  static_assert(BlockDevice<Device>);
  static constexpr uint64_t kSize = 4 << 20;

  void SetUp() override {
    device_ = factory_.Create(kSize);
    if (device_ == nullptr) GTEST_SKIP() << "the factory cannot create this device here";
  }
  Device& device() { return *device_; }
  uint32_t block() { return device_->info().logical_block_size; }

  // Reads in pieces of at most max_transfer bytes, so that any range reads back.
  PatternBuffer ReadBack(uint64_t offset, uint64_t length) {
    PatternBuffer buffer(length);
    const uint64_t max_transfer = device_->info().max_transfer;
    const uint64_t piece = max_transfer != 0 ? max_transfer : length;
    for (uint64_t done = 0; done < length; done += piece) {
      const uint64_t size = std::min(piece, length - done);
      EXPECT_TRUE(ReadAt(device(), offset + done, buffer.span().subspan(done, size)).ok());
    }
    return buffer;
  }

  Factory factory_;
  std::unique_ptr<Device> device_;
};

TYPED_TEST_SUITE_P(DeviceConformanceTest);

TYPED_TEST_P(DeviceConformanceTest, DescribesAConsistentGeometry) {
  const DeviceInfo& info = this->device().info();
  EXPECT_EQ(info.size, this->kSize);
  EXPECT_GE(info.logical_block_size, 512u);
  EXPECT_TRUE(std::has_single_bit(info.logical_block_size));
  EXPECT_EQ(info.size % info.logical_block_size, 0u);
  EXPECT_TRUE(std::has_single_bit(info.memory_alignment));
  EXPECT_FALSE(info.caps.read_only);
  if (info.caps.discard_zeroes_data) {
    EXPECT_TRUE(info.caps.discard);
  }
}

TYPED_TEST_P(DeviceConformanceTest, ReadsBackWhatWasWritten) {
  const uint32_t block = this->block();
  const uint64_t spans[][2] = {{0, block}, {block, 7 * uint64_t{block}}, {this->kSize - block, block},
                               {65536, 65536}};
  uint32_t seed = 1;
  for (auto [offset, length] : spans) {
    PatternBuffer data(length, seed++);
    ASSERT_TRUE(WriteAt(this->device(), offset, data.span()).ok());
    EXPECT_TRUE(this->ReadBack(offset, length) == data) << "offset " << offset;
  }
}

TYPED_TEST_P(DeviceConformanceTest, StartsZeroFilled) {
  PatternBuffer zeroes(65536);
  std::memset(zeroes.data(), 0, zeroes.size());
  EXPECT_TRUE(this->ReadBack(this->kSize - 65536, 65536) == zeroes);
}

TYPED_TEST_P(DeviceConformanceTest, RejectsRequestsBeyondTheEnd) {
  const uint32_t block = this->block();
  PatternBuffer before = this->ReadBack(this->kSize - 4 * block, 4 * block);
  PatternBuffer data(8 * block, 7);
  auto& dev = this->device();
  EXPECT_EQ(WriteAt(dev, this->kSize - 4 * block, data.span()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(this->ReadBack(this->kSize - 4 * block, 4 * block) == before)
      << "a rejected write changed data";
  EXPECT_EQ(ReadAt(dev, this->kSize, data.span().first(block)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ReadAt(dev, ~uint64_t{0} - block + 1, data.span().first(block)).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(ReadAt(dev, this->kSize, data.span().first(0)).ok());
  if (dev.info().caps.discard) {
    EXPECT_EQ(Discard(dev, this->kSize - block, 2 * block).code(), absl::StatusCode::kOutOfRange);
  }
  if (dev.info().caps.write_zeroes) {
    EXPECT_EQ(WriteZeroes(dev, this->kSize, block).code(), absl::StatusCode::kOutOfRange);
  }
}

TYPED_TEST_P(DeviceConformanceTest, RejectsMisalignedRequests) {
  auto& dev = this->device();
  const uint32_t block = this->block();
  PatternBuffer data(2 * block, 3);
  EXPECT_EQ(WriteAt(dev, block / 2, data.span().first(block)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadAt(dev, 0, data.span().first(block - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  if (dev.info().memory_alignment > 1) {
    EXPECT_EQ(ReadAt(dev, 0, data.span().subspan(1, block)).code(), absl::StatusCode::kInvalidArgument);
  }
  Request flush = Request::Flush();
  flush.offset = block;
  EXPECT_EQ(SubmitAndWait(dev, flush).code(), absl::StatusCode::kInvalidArgument);
  Request read = Request::Read(0, data.span().first(block));
  read.flags = kFua;
  EXPECT_EQ(SubmitAndWait(dev, read).code(), absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(DeviceConformanceTest, TransfersLargeRequestsWhole) {
  // Larger than any single system call transfers at once: no short I/O.
  const uint64_t max = this->device().info().max_transfer;
  const uint64_t length = max != 0 ? max : 3 * 1024 * 1024 + this->block();
  PatternBuffer data(length, 11);
  ASSERT_TRUE(WriteAt(this->device(), this->block(), data.span()).ok());
  EXPECT_TRUE(this->ReadBack(this->block(), length) == data);
}

TYPED_TEST_P(DeviceConformanceTest, FlushedAndFuaDataSurviveACrash) {
  const uint32_t block = this->block();
  PatternBuffer flushed(4 * block, 21), fua(4 * block, 22), volatile_data(4 * block, 23);
  ASSERT_TRUE(WriteAt(this->device(), 0, flushed.span()).ok());
  ASSERT_TRUE(Flush(this->device()).ok());
  ASSERT_TRUE(WriteAt(this->device(), 8 * block, fua.span(), kFua).ok());
  PatternBuffer preflushed(4 * block, 24);
  ASSERT_TRUE(WriteAt(this->device(), 24 * block, preflushed.span()).ok());
  PatternBuffer marker(block, 25);
  ASSERT_TRUE(WriteAt(this->device(), 32 * block, marker.span(), kPreflush).ok());
  ASSERT_TRUE(WriteAt(this->device(), 16 * block, volatile_data.span()).ok());
  this->device_ = this->factory_.Crash(std::move(this->device_));
  ASSERT_NE(this->device_, nullptr);
  EXPECT_TRUE(this->ReadBack(0, 4 * block) == flushed);
  EXPECT_TRUE(this->ReadBack(8 * block, 4 * block) == fua);
  EXPECT_TRUE(this->ReadBack(24 * block, 4 * block) == preflushed);
  if constexpr (TypeParam::kCrashLosesUnflushed) {
    PatternBuffer zeroes(4 * block);
    std::memset(zeroes.data(), 0, zeroes.size());
    EXPECT_TRUE(this->ReadBack(16 * block, 4 * block) == zeroes);
  }
}

TYPED_TEST_P(DeviceConformanceTest, DiscardAndWriteZeroesFollowTheCapabilities) {
  auto& dev = this->device();
  const Capabilities caps = dev.info().caps;
  const uint64_t length = 16 * uint64_t{this->block()};
  PatternBuffer old_data(length, 31), zeroes(length);
  std::memset(zeroes.data(), 0, length);
  ASSERT_TRUE(WriteAt(dev, 0, old_data.span()).ok());
  ASSERT_TRUE(WriteAt(dev, length, old_data.span()).ok());
  absl::Status discarded = Discard(dev, 0, length);
  if (!caps.discard) {
    EXPECT_EQ(discarded.code(), absl::StatusCode::kUnimplemented);
  } else {
    ASSERT_TRUE(discarded.ok()) << discarded;
    PatternBuffer after = this->ReadBack(0, length);
    if (caps.discard_zeroes_data) {
      EXPECT_TRUE(after == zeroes);
    } else {
      for (uint64_t b = 0; b < length; b += this->block())
        EXPECT_TRUE(std::memcmp(after.data() + b, old_data.data() + b, this->block()) == 0 ||
                    std::memcmp(after.data() + b, zeroes.data() + b, this->block()) == 0);
    }
  }
  absl::Status zeroed = WriteZeroes(dev, length, length);
  if (!caps.write_zeroes) {
    EXPECT_EQ(zeroed.code(), absl::StatusCode::kUnimplemented);
  } else {
    ASSERT_TRUE(zeroed.ok()) << zeroed;
    EXPECT_TRUE(this->ReadBack(length, length) == zeroes);
  }
  EXPECT_TRUE(this->ReadBack(2 * length, length) == zeroes) << "data after the range changed";
}

// kBlockStatus (caps.block_status): written ranges are data, holes read as
// zeroes, and any sub-range gets a well-formed answer; without the capability
// the request is refused and DescribeAllocation reports everything as data.
TYPED_TEST_P(DeviceConformanceTest, DescribesAllocationTruthfully) {
  auto& dev = this->device();
  const uint64_t block = this->block(), size = this->kSize;
  const uint64_t data_at = 256 << 10, data_length = 64 << 10, small_at = 2 << 20;
  PatternBuffer data(data_length, 7), small(block, 8);
  ASSERT_TRUE(WriteAt(dev, data_at, data.span()).ok());
  ASSERT_TRUE(WriteAt(dev, small_at, small.span()).ok());
  std::vector<Extent> answer;
  absl::Status direct = SubmitAndWait(dev, Request::BlockStatus(0, size, &answer));
  absl::StatusOr<std::vector<Extent>> whole = DescribeAllocation(dev, 0, size);
  ASSERT_TRUE(whole.ok()) << whole.status();
  if (!dev.info().caps.block_status) {
    EXPECT_EQ(direct.code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(*whole, (std::vector<Extent>{{.offset = 0, .length = size, .hole = false}}));
    return;
  }
  ASSERT_TRUE(direct.ok()) << direct;
  for (auto [offset, length] : {std::pair<uint64_t, uint64_t>{0, size},
                                {data_at - block, data_length + 2 * block},
                                {data_at + block, block},
                                {small_at - 64 * block, 128 * block}}) {
    absl::StatusOr<std::vector<Extent>> extents = DescribeAllocation(dev, offset, length);
    ASSERT_TRUE(extents.ok()) << extents.status();
    EXPECT_TRUE(CheckExtents(*extents, offset, length, block).ok())
        << CheckExtents(*extents, offset, length, block);
    for (const Extent& extent : *extents) {
      const bool overlaps_data = (extent.offset < data_at + data_length &&
                                  extent.end() > data_at) ||
                                 (extent.offset < small_at + block && extent.end() > small_at);
      if (overlaps_data) {
        EXPECT_FALSE(extent.hole) << "written data reported as a hole at " << extent.offset;
      }
      if (!extent.hole) continue;
      PatternBuffer zeroes(extent.length), read = this->ReadBack(extent.offset, extent.length);
      std::memset(zeroes.data(), 0, zeroes.size());
      EXPECT_TRUE(read == zeroes) << "hole at " << extent.offset << " does not read as zeroes";
    }
  }
  EXPECT_EQ(DescribeAllocation(dev, size, block).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(SubmitAndWait(dev, Request::BlockStatus(0, block, nullptr)).code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST_P(DeviceConformanceTest, ServesConcurrentSubmittersExactlyOnce) {
  constexpr int kThreads = 4, kPerThread = 64, kInFlight = 8;
  const uint64_t block = this->block();
  struct Io {
    Request request;
    std::atomic<int>* in_flight = nullptr;
    std::atomic<int> completions{0};
    std::atomic<bool> ok{false};
  };
  std::vector<std::unique_ptr<Io>> ios;
  std::vector<PatternBuffer> buffers;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    ios.push_back(std::make_unique<Io>());
    buffers.emplace_back(block, 100 + i);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::atomic<int> in_flight{0};
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) {
        while (in_flight.load() >= kInFlight) std::this_thread::yield();
        Io& io = *ios[i];
        io.request = Request::Write(i * block, buffers[i].span());
        io.in_flight = &in_flight;
        io.request.context = &io;
        io.request.on_complete = [](Request& r, absl::Status s) {
          Io* self = static_cast<Io*>(r.context);
          self->ok = s.ok();
          self->completions.fetch_add(1);
          self->in_flight->fetch_sub(1);
        };
        in_flight.fetch_add(1);
        this->device().Submit(io.request);
      }
      while (in_flight.load() > 0) std::this_thread::yield();
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    EXPECT_EQ(ios[i]->completions.load(), 1) << "request " << i;
    EXPECT_TRUE(ios[i]->ok.load());
    EXPECT_TRUE(this->ReadBack(i * block, block) == buffers[i]) << "block " << i;
  }
}

REGISTER_TYPED_TEST_SUITE_P(DeviceConformanceTest, DescribesAConsistentGeometry,
                            ReadsBackWhatWasWritten, StartsZeroFilled, RejectsRequestsBeyondTheEnd,
                            RejectsMisalignedRequests, TransfersLargeRequestsWhole,
                            FlushedAndFuaDataSurviveACrash,
                            DiscardAndWriteZeroesFollowTheCapabilities,
                            DescribesAllocationTruthfully,
                            ServesConcurrentSubmittersExactlyOnce);

}  // namespace blkclone::testing

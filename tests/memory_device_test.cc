// MemoryDevice: the conformance suite, and the crash simulation in detail.
#include "blkclone/testing/memory_device.hpp"

#include <vector>

#include "blkclone/sync_io.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

struct CrashingMemoryFactory {
  using Device = MemoryDevice;
  static constexpr bool kCrashLosesUnflushed = true;
  std::unique_ptr<Device> Create(uint64_t size) {
    return *MemoryDevice::Create({.size = size, .simulate_crashes = true});
  }
  std::unique_ptr<Device> Crash(std::unique_ptr<Device> device) {
    device->SimulateCrash();
    return device;
  }
};

// 4 KiB blocks, no discard, emulated FUA: the suite must adapt to capabilities.
struct PlainMemoryFactory {
  using Device = MemoryDevice;
  static constexpr bool kCrashLosesUnflushed = false;
  std::unique_ptr<Device> Create(uint64_t size) {
    return *MemoryDevice::Create({.size = size, .logical_block_size = 4096,
                                  .caps = {.write_zeroes = true}});
  }
  std::unique_ptr<Device> Crash(std::unique_ptr<Device> device) { return device; }
};

using MemoryFactories = ::testing::Types<CrashingMemoryFactory, PlainMemoryFactory>;

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Memory, DeviceConformanceTest, MemoryFactories);
}  // namespace testing
namespace {

std::vector<std::byte> Bytes(size_t n, uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

TEST(MemoryDeviceTest, RejectsBadGeometry) {
  EXPECT_EQ(MemoryDevice::Create({.size = 1000}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MemoryDevice::Create({.size = 4096, .logical_block_size = 1000}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryDeviceTest, CrashKeepsOnlyDurableBlocks) {
  auto dev = *MemoryDevice::Create({.size = 8192, .simulate_crashes = true});
  ASSERT_TRUE(WriteAt(*dev, 0, Bytes(512, 1)).ok());
  ASSERT_TRUE(Flush(*dev).ok());
  ASSERT_TRUE(WriteAt(*dev, 0, Bytes(512, 2)).ok());      // overwrites durable data
  ASSERT_TRUE(WriteAt(*dev, 512, Bytes(512, 3), kFua).ok());
  ASSERT_TRUE(Discard(*dev, 1024, 512).ok());             // not durable either
  dev->SimulateCrash();
  std::vector<std::byte> contents = dev->Contents();
  EXPECT_EQ(contents[0], std::byte{1});
  EXPECT_EQ(contents[512], std::byte{3});
  EXPECT_EQ(contents[1024], std::byte{0});
}

TEST(MemoryDeviceTest, DiscardBecomesDurableOnFlush) {
  auto dev = *MemoryDevice::Create({.size = 8192, .simulate_crashes = true});
  ASSERT_TRUE(WriteAt(*dev, 0, Bytes(1024, 5)).ok());
  ASSERT_TRUE(Flush(*dev).ok());
  ASSERT_TRUE(Discard(*dev, 0, 512).ok());
  ASSERT_TRUE(Flush(*dev).ok());
  dev->SimulateCrash();
  EXPECT_EQ(dev->Contents()[0], std::byte{0});
  EXPECT_EQ(dev->Contents()[512], std::byte{5});
}

TEST(MemoryDeviceTest, FillIsDurable) {
  auto dev = *MemoryDevice::Create({.size = 4096, .simulate_crashes = true});
  dev->Fill(512, Bytes(512, 8));
  dev->SimulateCrash();
  EXPECT_EQ(dev->Contents()[512], std::byte{8});
}

}  // namespace
}  // namespace blkclone

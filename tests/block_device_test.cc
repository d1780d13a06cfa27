// The device contract: which types model BlockDevice, request validation, and
// the type-erased and synchronous layers on top.
#include "blkclone/block_device.hpp"

#include <algorithm>
#include <vector>

#include "blkclone/aligned_buffer.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

// Minimal model: everything the concept asks, nothing more; 4 KiB of bytes.
struct MinimalDevice {
  const DeviceInfo& info() const { return info_; }
  void Submit(Request& r) noexcept {
    if (absl::Status status = ValidateRequest(info_, r); !status.ok())
      return r.Complete(std::move(status));
    std::byte* at = bytes_.data() + r.offset;
    if (r.op == Op::kRead) std::copy_n(at, r.length, r.data);
    if (r.op == Op::kWrite) std::copy_n(r.data, r.length, at);
    if (r.op == Op::kWriteZeroes) std::fill_n(at, r.length, std::byte{0});
    if (r.op == Op::kDiscard) std::fill_n(at, r.length, std::byte{0xdd});  // any content
    r.Complete(absl::OkStatus());
  }
  DeviceInfo info_{.size = 4096, .logical_block_size = 512,
                   .caps = {.discard = true, .write_zeroes = true}};
  std::vector<std::byte> bytes_ = std::vector<std::byte>(4096, std::byte{0x11});
};
static_assert(BlockDevice<MinimalDevice>);

// Near-misses, each breaking one requirement.
struct SubmitMayThrow {
  const DeviceInfo& info() const;
  void Submit(Request& r);
};
struct SubmitTakesACopy {
  const DeviceInfo& info() const;
  void Submit(Request r) noexcept;
};
struct SubmitReturnsStatus {
  const DeviceInfo& info() const;
  absl::Status Submit(Request& r) noexcept;
};
struct InfoByValue {
  DeviceInfo info() const;
  void Submit(Request& r) noexcept;
};
struct InfoNotConst {
  const DeviceInfo& info();
  void Submit(Request& r) noexcept;
};
struct NoSubmit {
  const DeviceInfo& info() const;
};
static_assert(!BlockDevice<SubmitMayThrow>);
static_assert(!BlockDevice<SubmitTakesACopy>);
static_assert(!BlockDevice<SubmitReturnsStatus>);
static_assert(!BlockDevice<InfoByValue>);
static_assert(!BlockDevice<InfoNotConst>);
static_assert(!BlockDevice<NoSubmit>);
static_assert(!BlockDevice<int>);
static_assert(BlockDevice<AnyBlockDevice>);
static_assert(BlockDevice<MemoryDevice>);

TEST(BlockDeviceConceptTest, MinimalModelWorksWithTheSyncHelpers) {
  MinimalDevice device;
  const std::vector<std::byte> written(1024, std::byte{0x5a});
  ASSERT_TRUE(WriteAt(device, 512, written).ok());
  ASSERT_TRUE(WriteZeroes(device, 2048, 512).ok());
  ASSERT_TRUE(Discard(device, 3072, 512).ok());
  ASSERT_TRUE(Flush(device).ok());
  std::vector<std::byte> expected(4096, std::byte{0x11});
  std::fill_n(expected.begin() + 512, 1024, std::byte{0x5a});
  std::fill_n(expected.begin() + 2048, 512, std::byte{0});
  std::fill_n(expected.begin() + 3072, 512, std::byte{0xdd});
  EXPECT_EQ(device.bytes_, expected);
  std::vector<std::byte> read(1024);
  ASSERT_TRUE(ReadAt(device, 1024, read).ok());
  EXPECT_EQ(read, std::vector<std::byte>(expected.begin() + 1024, expected.begin() + 2048));
  // The device's errors come back as they are.
  EXPECT_EQ(ReadAt(device, 4096, read).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(WriteAt(device, 100, written).code(), absl::StatusCode::kInvalidArgument);
}

DeviceInfo SampleInfo() {
  return DeviceInfo{.size = 1 << 20, .logical_block_size = 4096, .memory_alignment = 512,
                    .max_transfer = 1 << 16,
                    .caps = {.discard = true, .write_zeroes = false}};
}

TEST(ValidateRequestTest, AcceptsWellFormedRequests) {
  AlignedBuffer buffer(1 << 16, 4096);
  EXPECT_TRUE(ValidateRequest(SampleInfo(), Request::Read(0, buffer.span())).ok());
  EXPECT_TRUE(
      ValidateRequest(SampleInfo(), Request::Write((1 << 20) - (1 << 16), buffer.span(), kFua))
          .ok());
  EXPECT_TRUE(ValidateRequest(SampleInfo(), Request::Flush()).ok());
  EXPECT_TRUE(ValidateRequest(SampleInfo(), Request::Discard(4096, (1 << 20) - 4096)).ok());
}

TEST(ValidateRequestTest, NamesEachRuleItEnforces) {
  AlignedBuffer buffer(2 << 16, 4096);
  const DeviceInfo info = SampleInfo();
  struct Case {
    Request request;
    absl::StatusCode code;
    const char* words;
  };
  Request fua_read = Request::Read(0, buffer.span().first(4096));
  fua_read.flags = kFua;
  Request flush_with_range = Request::Flush();
  flush_with_range.length = 4096;
  Request no_buffer = Request::Read(0, buffer.span().first(4096));
  no_buffer.data = nullptr;
  const Case cases[] = {
      {Request::Read(512, buffer.span().first(4096)), absl::StatusCode::kInvalidArgument,
       "logical block size"},
      {Request::Read(0, buffer.span().subspan(1, 4096)), absl::StatusCode::kInvalidArgument,
       "aligned to 512"},
      {Request::Read(1 << 20, buffer.span().first(4096)), absl::StatusCode::kOutOfRange,
       "beyond the end"},
      {Request::Read(~uint64_t{4095}, buffer.span().first(4096)), absl::StatusCode::kOutOfRange,
       "beyond the end"},
      {Request::Read(0, buffer.span().first(2 << 16)), absl::StatusCode::kInvalidArgument,
       "maximum transfer"},
      {Request::WriteZeroes(0, 4096), absl::StatusCode::kUnimplemented, "cannot write zeroes"},
      {fua_read, absl::StatusCode::kInvalidArgument, "invalid flags"},
      {flush_with_range, absl::StatusCode::kInvalidArgument, "flush takes no"},
      {no_buffer, absl::StatusCode::kInvalidArgument, "no buffer"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateRequest(info, c.request);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_NE(s.message().find(c.words), absl::string_view::npos) << s;
  }
  DeviceInfo read_only = info;
  read_only.caps.read_only = true;
  EXPECT_EQ(ValidateRequest(read_only, Request::Discard(0, 4096)).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ValidateRequest(read_only, Request::Read(0, buffer.span().first(4096))).ok());
}

TEST(AnyBlockDeviceTest, ForwardsToTheOwnedDevice) {
  auto memory = MemoryDevice::Create({.size = 1 << 16});
  ASSERT_TRUE(memory.ok());
  MemoryDevice* raw = memory->get();
  AnyBlockDevice any(std::move(*memory));
  EXPECT_EQ(any.info().size, 1u << 16);
  std::vector<std::byte> data(512, std::byte{7});
  ASSERT_TRUE(WriteAt(any, 1024, data).ok());
  EXPECT_EQ(raw->Contents()[1024], std::byte{7});
  EXPECT_EQ(raw->Contents()[1023], std::byte{0});
}

TEST(AnyBlockDeviceTest, BorrowsWithoutOwning) {
  auto memory = MemoryDevice::Create({.size = 1 << 16});
  ASSERT_TRUE(memory.ok());
  {
    AnyBlockDevice view = AnyBlockDevice::Borrow(**memory);
    std::vector<std::byte> data(512, std::byte{9});
    ASSERT_TRUE(WriteAt(view, 0, data).ok());
  }
  EXPECT_EQ((*memory)->Contents()[0], std::byte{9});  // still alive after the view
}

TEST(SyncIoTest, ReturnsTheDeviceError) {
  auto memory = MemoryDevice::Create({.size = 1 << 16});
  ASSERT_TRUE(memory.ok());
  std::vector<std::byte> data(512);
  EXPECT_EQ(ReadAt(**memory, 1 << 16, data).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(WriteZeroes(**memory, 0, 4096, kFua | kPreflush).ok());
}

}  // namespace
}  // namespace blkclone

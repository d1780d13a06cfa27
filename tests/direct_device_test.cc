// DirectDevice: the conformance suite on regular files (relaxed, strict, and
// with a raised alignment that makes 512-byte requests read-modify-write) and
// on loop devices (512 and 4096-byte sectors), plus bouncing, the page cache
// bypass, and what Open refuses. Files live in $TMPDIR; where its file system
// refuses O_DIRECT (tmpfs before Linux 6.6) the tests skip and say so.
#include "blkclone/direct_device.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "blkclone/sync_io.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "device_factories.hpp"
#include "scratch_files.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "request_batch.hpp"

namespace blkclone {
namespace {

using testing::FileBytes;
using ::testing::HasSubstr;
using testing::LoopDevice;
using testing::LoopFactory;
using testing::PathFactory;
using testing::PatternBuffer;
using testing::RequestBatch;

template <bool kStrict, uint32_t kMinAlignment>
struct OpenDirect {
  using Device = DirectDevice;
  static absl::StatusOr<std::unique_ptr<Device>> Open(const std::string& path) {
    return DirectDevice::Open(
        path, {.direct_io = {.strict_alignment = kStrict, .min_alignment = kMinAlignment}});
  }
};
using Relaxed = OpenDirect<false, 0>;
using Strict = OpenDirect<true, 0>;
// 4 KiB blocks under a 512-byte logical block size: the suite's block-sized
// requests, including its concurrent ones, all read-modify-write.
using PageAligned = OpenDirect<false, 4096>;

using DirectFactories =
    ::testing::Types<PathFactory<Relaxed>, PathFactory<Strict>, PathFactory<PageAligned>,
                     LoopFactory<Relaxed>, LoopFactory<Strict, 4096>>;

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Direct, DeviceConformanceTest, DirectFactories);
}  // namespace testing
namespace {

using DirectDeviceTest = testing::ScratchFileTest;

TEST_F(DirectDeviceTest, AlignedRequestsGoStraightThrough) {
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device, DirectDevice::Open(NewFile(1 << 20), {}));
  EXPECT_EQ(device->info().logical_block_size, 512u);
  EXPECT_EQ(device->info().memory_alignment, 1u);
  EXPECT_EQ(device->info().caps.fua, FuaSupport::kNative);
  const uint64_t a = device->alignment().offset;
  ASSERT_LE(device->alignment().memory, 4096u);  // PatternBuffer's alignment
  PatternBuffer data(16 * a, 1);
  ASSERT_TRUE(WriteAt(*device, a, data.span(), kFua).ok());
  PatternBuffer back(16 * a);
  ASSERT_TRUE(ReadAt(*device, a, back.span()).ok());
  EXPECT_TRUE(back == data);
  EXPECT_EQ(device->bounces(), 0u);
}

TEST_F(DirectDeviceTest, MisalignedBuffersBounceAndStayCorrect) {
  const std::string path = NewFile(1 << 20);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device, DirectDevice::Open(path, {}));
  if (device->alignment().memory == 1) GTEST_SKIP() << "this file system needs no alignment";
  PatternBuffer source(64 * 1024 + 1, 2);
  std::span<std::byte> odd = source.span().subspan(1);  // an odd address
  ASSERT_TRUE(WriteAt(*device, 8192, odd).ok());
  EXPECT_EQ(device->bounces(), 1u);
  std::vector<std::byte> on_disk = FileBytes(path, 1 << 20);
  EXPECT_EQ(std::memcmp(on_disk.data() + 8192, odd.data(), odd.size()), 0);

  PatternBuffer target(64 * 1024 + 1);
  std::span<std::byte> odd_target = target.span().subspan(1);
  ASSERT_TRUE(ReadAt(*device, 8192, odd_target).ok());
  EXPECT_EQ(device->bounces(), 2u);
  EXPECT_EQ(std::memcmp(odd_target.data(), odd.data(), odd.size()), 0);
}

TEST_F(DirectDeviceTest, UnalignedRangesReadModifyWriteOnlyTheirOwnBytes) {
  constexpr uint64_t kSize = 64 << 10;
  const std::string path = NewFile(kSize);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device,
                                 DirectDevice::Open(path, {.direct_io = {.min_alignment = 4096}}));
  ASSERT_EQ(device->alignment().offset, 4096u);
  std::vector<std::byte> model(kSize);
  PatternBuffer base(kSize, 3);
  ASSERT_TRUE(WriteAt(*device, 0, base.span()).ok());
  std::memcpy(model.data(), base.data(), kSize);
  ASSERT_EQ(device->bounces(), 0u);

  // Inside one block; across a block boundary; unaligned at both ends around
  // whole blocks, from an odd address.
  struct Piece {
    uint64_t offset, length, skew;
  } pieces[] = {{1536, 512, 0}, {7680, 1024, 0}, {11776, 5 * 4096 + 1024, 1}};
  uint32_t seed = 10;
  for (const Piece& piece : pieces) {
    PatternBuffer data(piece.length + piece.skew, seed++);
    std::span<std::byte> bytes = data.span().subspan(piece.skew);
    ASSERT_TRUE(WriteAt(*device, piece.offset, bytes).ok());
    std::memcpy(model.data() + piece.offset, bytes.data(), piece.length);
  }
  EXPECT_EQ(device->bounces(), 3u);
  EXPECT_TRUE(FileBytes(path, kSize) == model) << "bytes outside the written ranges changed";

  PatternBuffer back(5 * 4096 + 1024 + 1);
  std::span<std::byte> odd = back.span().subspan(1);
  ASSERT_TRUE(ReadAt(*device, 11776 - 512, odd).ok());
  EXPECT_EQ(std::memcmp(odd.data(), model.data() + 11776 - 512, odd.size()), 0);
  EXPECT_EQ(device->bounces(), 4u);
}

TEST_F(DirectDeviceTest, ConcurrentWritesSharingEdgeBlocksKeepEveryUpdate) {
  // Every 4 KiB block gets eight 512-byte writes in flight at once; without
  // the edge-block locks their read-modify-writes would undo each other.
  constexpr uint64_t kBlocks = 64, kSize = kBlocks * 4096;
  const std::string path = NewFile(kSize);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
      auto device,
      DirectDevice::Open(path, {.worker_threads = 8, .direct_io = {.min_alignment = 4096}}));
  PatternBuffer data(kSize, 4);
  RequestBatch batch;
  for (uint64_t sector = 0; sector < kSize / 512; ++sector) {
    // Interleaved so that neighbours are submitted close together.
    const uint64_t s = (sector % 8) * kBlocks + sector / 8;
    const uint64_t offset = (s % kBlocks) * 4096 + (s / kBlocks) * 512;
    batch.Add(Request::Write(offset, data.span().subspan(offset, 512)));
  }
  batch.SubmitAll(*device);
  batch.Wait();
  EXPECT_EQ(batch.Problems(), "");
  std::vector<std::byte> on_disk = FileBytes(path, kSize);
  EXPECT_EQ(std::memcmp(on_disk.data(), data.data(), kSize), 0);
  EXPECT_EQ(device->bounces(), kSize / 512);
}

TEST_F(DirectDeviceTest, StrictModeAdvertisesTheAlignmentAndNeverBounces) {
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
      auto device, DirectDevice::Open(NewFile(1 << 20), {.direct_io = {.strict_alignment = true,
                                                                       .min_alignment = 4096}}));
  EXPECT_EQ(device->info().logical_block_size, 4096u);
  EXPECT_EQ(device->info().memory_alignment, 4096u);
  PatternBuffer data(8192 + 1, 5);
  EXPECT_EQ(WriteAt(*device, 512, data.span().first(4096)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteAt(*device, 0, data.span().subspan(1, 4096)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(WriteAt(*device, 4096, data.span().first(8192)).ok());
  EXPECT_EQ(device->bounces(), 0u);
}

// Pages of `path` in the page cache.
size_t CachedPages(const std::string& path, size_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return ~size_t{0};
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((size + page - 1) / page);
  size_t cached = ::mincore(map, size, resident.data()) == 0 ? 0 : ~size_t{0};
  for (unsigned char r : resident) cached += r & 1;
  ::munmap(map, size);
  return cached;
}

TEST_F(DirectDeviceTest, BypassesThePageCache) {
  constexpr size_t kSize = 1 << 20;
  PatternBuffer data(kSize, 6);
  // The measure works: a buffered write leaves its pages cached.
  const std::string buffered = NewFile(kSize);
  int fd = ::open(buffered.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_EQ(::pwrite(fd, data.data(), kSize, 0), static_cast<ssize_t>(kSize));
  ::close(fd);
  ASSERT_GT(CachedPages(buffered, kSize), 0u);

  const std::string direct = NewFile(kSize);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device, DirectDevice::Open(direct, {}));
  ASSERT_TRUE(WriteAt(*device, 0, data.span()).ok());
  ASSERT_TRUE(ReadAt(*device, 0, data.span()).ok());
  EXPECT_EQ(CachedPages(direct, kSize), 0u);
}

TEST_F(DirectDeviceTest, ReportsTheSectorSizeOfABlockDevice) {
  std::optional<LoopDevice> loop = LoopDevice::Attach(NewFile(1 << 20), 4096);
  if (!loop.has_value()) GTEST_SKIP() << "no loop device (see stderr)";
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device, DirectDevice::Open(loop->path(), {}));
  EXPECT_EQ(device->info().logical_block_size, 4096u);
  EXPECT_EQ(device->alignment().offset, 4096u);
  EXPECT_FALSE(device->info().caps.discard_zeroes_data);
}

TEST_F(DirectDeviceTest, OpenErrorsSayWhatIsWrong) {
  const std::string path = NewFile(4096 + 512);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto fine, DirectDevice::Open(path, {}));
  fine.reset();
  EXPECT_EQ(DirectDevice::Open(path, {.worker_threads = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto odd_alignment = DirectDevice::Open(path, {.direct_io = {.min_alignment = 3000}});
  EXPECT_EQ(odd_alignment.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd_alignment.status().message(), HasSubstr("not a power of two"));
  auto partial_block = DirectDevice::Open(path, {.direct_io = {.min_alignment = 4096}});
  EXPECT_EQ(partial_block.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(partial_block.status().message(),
              HasSubstr("not a multiple of the direct-I/O alignment 4096"));
  auto directory = DirectDevice::Open(dir_.path().string(), {.read_only = true});
  EXPECT_THAT(directory.status().message(), HasSubstr("neither a regular file"));
}

TEST_F(DirectDeviceTest, DestructionCompletesBouncedAndDirectRequests) {
  constexpr uint64_t kSize = 1 << 20;
  const std::string path = NewFile(kSize);
  PatternBuffer data(kSize + 1, 7);
  RequestBatch batch;
  {
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto device, DirectDevice::Open(path, {.worker_threads = 1}));
    // Even pieces are aligned, odd ones come from an odd address and bounce.
    for (uint64_t offset = 0; offset < kSize; offset += 4096) {
      const uint64_t skew = (offset / 4096) % 2;
      batch.Add(Request::Write(offset, data.span().subspan(offset + skew, 4096)));
    }
    batch.SubmitAll(*device);
  }
  EXPECT_EQ(batch.Problems(), "");
  std::vector<std::byte> on_disk = FileBytes(path, kSize);
  for (uint64_t offset = 0; offset < kSize; offset += 4096) {
    const uint64_t skew = (offset / 4096) % 2;
    EXPECT_EQ(std::memcmp(on_disk.data() + offset, data.data() + offset + skew, 4096), 0)
        << "offset " << offset;
  }
}

}  // namespace
}  // namespace blkclone

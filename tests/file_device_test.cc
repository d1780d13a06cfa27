// FileDevice: the conformance suite on regular files and on a loop device,
// plus what only files show (open errors, hole punching, shutdown).
#include "blkclone/file_device.hpp"

#include <sys/stat.h>

#include <atomic>
#include <vector>

#include "blkclone/sync_io.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "device_factories.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using ::testing::HasSubstr;
using testing::PatternBuffer;
using testing::TempDir;

struct OpenFile {
  using Device = FileDevice;
  static absl::StatusOr<std::unique_ptr<Device>> Open(const std::string& path) {
    return FileDevice::Open(path, {});
  }
};

using FileFactories =
    ::testing::Types<testing::PathFactory<OpenFile>, testing::LoopFactory<OpenFile>>;

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(File, DeviceConformanceTest, FileFactories);
}  // namespace testing
namespace {

TEST(FileDeviceTest, OpenErrorsSayWhatIsWrong) {
  TempDir dir = *TempDir::Create();
  auto missing = FileDevice::Open((dir.path() / "nope").string(), {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope"));

  auto directory = FileDevice::Open(dir.path().string(), {.read_only = true});
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(directory.status().message(), HasSubstr("neither a regular file"));

  std::string odd = *dir.CreateFile("odd.img", 1000);
  auto odd_size = FileDevice::Open(odd, {});
  EXPECT_EQ(odd_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd_size.status().message(), HasSubstr("not a multiple of the block size 512"));

  std::string fine = *dir.CreateFile("fine.img", 4096);
  EXPECT_EQ(FileDevice::Open(fine, {.logical_block_size = 3000}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FileDevice::Open(fine, {.worker_threads = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FileDeviceTest, ReadOnlyRefusesChanges) {
  TempDir dir = *TempDir::Create();
  std::string path = *dir.CreateFile("ro.img", 1 << 16);
  auto device = *FileDevice::Open(path, {.read_only = true});
  PatternBuffer data(4096, 1);
  EXPECT_EQ(WriteAt(*device, 0, data.span()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Discard(*device, 0, 4096).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ReadAt(*device, 0, data.span()).ok());
  EXPECT_TRUE(Flush(*device).ok());
}

TEST(FileDeviceTest, DiscardPunchesAHole) {
  TempDir dir = *TempDir::Create();
  std::string path = *dir.CreateFile("holes.img", 4 << 20);
  auto device = *FileDevice::Open(path, {});
  PatternBuffer data(4 << 20, 2);
  ASSERT_TRUE(WriteAt(*device, 0, data.span(), kFua).ok());
  struct stat before, after;
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  ASSERT_TRUE(Discard(*device, 0, 2 << 20).ok());
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, before.st_size);
  ASSERT_GT(before.st_blocks, 0);
  EXPECT_LT(after.st_blocks, before.st_blocks);
}

TEST(FileDeviceTest, DestructionCompletesEveryQueuedRequest) {
  TempDir dir = *TempDir::Create();
  std::string path = *dir.CreateFile("busy.img", 8 << 20);
  constexpr int kRequests = 256;
  std::atomic<int> completed{0};
  std::vector<Request> requests(kRequests);
  PatternBuffer data(kRequests * 4096, 3);
  {
    auto device = *FileDevice::Open(path, {.worker_threads = 1});
    for (int i = 0; i < kRequests; ++i) {
      requests[i] = Request::Write(i * 4096, data.span().subspan(i * 4096, 4096), kFua);
      requests[i].context = &completed;
      requests[i].on_complete = [](Request& r, absl::Status s) {
        EXPECT_TRUE(s.ok()) << s;
        static_cast<std::atomic<int>*>(r.context)->fetch_add(1);
      };
      device->Submit(requests[i]);
    }
  }
  EXPECT_EQ(completed.load(), kRequests);
  auto device = *FileDevice::Open(path, {});
  PatternBuffer back(kRequests * 4096);
  ASSERT_TRUE(ReadAt(*device, 0, back.span()).ok());
  EXPECT_TRUE(back == data);
}

}  // namespace
}  // namespace blkclone

// CopyFileRangeCopier: kernel copies between files, the buffered fallback
// where the kernel refuses, and a whole clone hydrated through it.
#include "blkclone/copy_file_range_copier.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

#include "blkclone/clone.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::RandomBytes;
using Bytes = std::vector<std::byte>;
using testing::TempDir;
constexpr uint64_t kSize = 8 << 20;

std::unique_ptr<FileDevice> FileWith(const TempDir& dir, const std::string& name,
                                     const Bytes& content) {
  auto device = *FileDevice::Open(*dir.CreateFile(name, content.size()), {});
  EXPECT_TRUE(WriteAt(*device, 0, content).ok());
  return device;
}

Bytes ReadAll(FileDevice& device) {
  Bytes bytes(device.info().size);
  EXPECT_TRUE(ReadAt(device, 0, bytes).ok());
  return bytes;
}

struct Job {
  CopyJob job;
  std::atomic<int> completions{0};
  absl::Status status;
};

void CopyAll(CopyFileRangeCopier& copier, uint64_t size, uint64_t piece) {
  std::vector<Job> jobs(size / piece);
  {
    for (size_t i = 0; i < jobs.size(); ++i) {
      jobs[i].job.offset = i * piece;
      jobs[i].job.length = piece;
      jobs[i].job.context = &jobs[i];
      jobs[i].job.on_complete = [](CopyJob& j, absl::Status s) {
        auto* self = static_cast<Job*>(j.context);
        self->status = std::move(s);
        self->completions.fetch_add(1);
      };
      copier.Copy(jobs[i].job);
    }
  }
  for (Job& j : jobs) {
    while (j.completions.load() == 0) std::this_thread::yield();
    EXPECT_EQ(j.completions.load(), 1);
    EXPECT_TRUE(j.status.ok()) << j.status;
  }
}

TEST(CopyFileRangeCopierTest, CopiesInTheKernelBetweenFilesOfOneFileSystem) {
  TempDir dir = *TempDir::Create("cfr-test");
  const Bytes data = RandomBytes(kSize, 1);
  auto source = FileWith(dir, "source.img", data);
  auto dest = FileWith(dir, "dest.img", Bytes(kSize));
  {
    CopyFileRangeCopier copier(*source, *dest, {});
    CopyAll(copier, kSize, 256 << 10);
    EXPECT_EQ(copier.fallback_jobs(), 0u) << "the kernel refused a same-file-system copy";
  }
  EXPECT_EQ(ReadAll(*dest), data);
}

TEST(CopyFileRangeCopierTest, FallsBackWhereTheKernelRefuses) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a loop device";
  TempDir dir = *TempDir::Create("cfr-test");
  const Bytes data = RandomBytes(kSize, 2);
  auto source = FileWith(dir, "source.img", data);
  std::string backing = *dir.CreateFile("backing.img", kSize);
  FILE* pipe = ::popen(("losetup --find --show " + backing + " 2>/dev/null").c_str(), "r");
  char line[256] = {};
  const bool attached = pipe != nullptr && std::fgets(line, sizeof line, pipe) != nullptr;
  if (pipe != nullptr) ::pclose(pipe);
  if (!attached) GTEST_SKIP() << "losetup could not attach a loop device";
  std::string loop = line;
  loop.erase(loop.find_last_not_of('\n') + 1);
  {
    auto dest = *FileDevice::Open(loop, {});  // copy_file_range takes regular files only
    std::atomic<int> told{0};
    CopyFileRangeCopier copier(*source, *dest,
                               {.on_fallback = [&](const absl::Status& refusal) {
                                  EXPECT_THAT(refusal.message(), ::testing::HasSubstr("copy_file_range"));
                                  ++told;
                                }});
    CopyAll(copier, kSize, 1 << 20);
    EXPECT_EQ(copier.fallback_jobs(), 8u);
    EXPECT_EQ(told.load(), 1);  // once, however many jobs fell back
    EXPECT_EQ(ReadAll(*dest), data);
  }
  (void)std::system(("losetup -d " + loop).c_str());
}

TEST(CopyFileRangeCopierTest, HydratesAWholeClone) {
  TempDir dir = *TempDir::Create("cfr-test");
  const Bytes data = RandomBytes(kSize, 3);
  auto source = FileWith(dir, "source.img", data);
  auto dest = FileWith(dir, "dest.img", Bytes(kSize, std::byte{7}));
  CopyFileRangeCopier copier(*source, *dest, {});
  InMemoryMetadata metadata(*MakeCloneGeometry(source->info(), dest->info(), 64 << 10));
  using FileClone = Clone<FileDevice, FileDevice, CopyFileRangeCopier>;
  auto clone = *FileClone::Create(*source, *dest, copier, metadata, {});
  {
    Hydrator<FileClone> hydrator(*clone, {.threshold = 8, .batch_size = 4});
    ASSERT_TRUE(hydrator.WaitUntilComplete(std::chrono::seconds(60)));
    ASSERT_TRUE(clone->Close().ok());
  }
  EXPECT_EQ(ReadAll(*dest), data);
  EXPECT_EQ(copier.fallback_jobs(), 0u);
}

}  // namespace
}  // namespace blkclone

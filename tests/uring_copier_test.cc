// UringCopier: exact copies of many concurrent jobs within its chunk bound,
// registered and plain buffers, O_DIRECT devices (aligned jobs on the ring,
// unaligned ones through the fallback), a source that shrinks under it,
// destruction with jobs queued, and a Clone over two UringDevices hydrating
// through it. Skips, saying why, where the kernel refuses io_uring or the
// scratch file system refuses O_DIRECT.
#include "blkclone/uring_copier.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "blkclone/clone.hpp"
#include "blkclone/clone_geometry.hpp"
#include "blkclone/extents.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "bounded_wait.hpp"
#include "device_factories.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scratch_files.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::AwaitOrAbort;
using testing::BoundedThread;
using testing::FileBytes;
using ::testing::HasSubstr;
using testing::RandomBytes;
using testing::TempDir;
using Bytes = std::vector<std::byte>;

// Copy jobs awaited together, each completion counted.
class JobSet {
 public:
  CopyJob& Add(uint64_t offset, uint64_t length) {
    Entry& entry = entries_.emplace_back();
    entry.set = this;
    entry.job.offset = offset;
    entry.job.length = length;
    entry.job.context = &entry;
    entry.job.on_complete = [](CopyJob& job, absl::Status status) {
      Entry& e = *static_cast<Entry*>(job.context);
      internal::MutexLock lock(e.set->mu_);
      ++e.completions;
      e.status = std::move(status);
      ++e.set->completed_;
      e.set->cv_.SignalAll();
    };
    return entry.job;
  }
  CopyJob& job(size_t i) { return entries_[i].job; }
  size_t size() const { return entries_.size(); }
  void Wait() {
    internal::MutexLock lock(mu_);
    AwaitOrAbort(
        cv_, mu_,
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completed_ >= entries_.size(); },
        "every copy job to complete");
  }
  // Each job's completions and final status.
  int completions(size_t i) {
    internal::MutexLock lock(mu_);
    return entries_[i].completions;
  }
  absl::Status status(size_t i) {
    internal::MutexLock lock(mu_);
    return entries_[i].status;
  }

 private:
  struct Entry {
    JobSet* set = nullptr;
    CopyJob job;
    int completions = 0;  // guarded by set->mu_
    absl::Status status;  // guarded by set->mu_
  };
  std::deque<Entry> entries_;
  internal::Mutex mu_;
  internal::CondVar cv_;
  size_t completed_ ABSL_GUARDED_BY(mu_) = 0;
};

class UringCopierTest : public ::testing::Test {
 protected:
  // A file holding `bytes`.
  std::string NewFile(const Bytes& bytes) {
    std::string path = *dir_.CreateFile("f" + std::to_string(files_++) + ".img", bytes.size());
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return path;
  }

  TempDir dir_ = *TempDir::Create("uring-copier-test");
  int files_ = 0;
};

TEST_F(UringCopierTest, CopiesManyConcurrentJobsExactlyWithinItsBound) {
  constexpr uint64_t kSize = 8 << 20, kChunk = 64 << 10;
  const Bytes source_bytes = RandomBytes(kSize, 1);
  const std::string source_path = NewFile(source_bytes);
  const std::string dest_path = NewFile(Bytes(kSize));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(source_path, {.read_only = true}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
      auto copier, UringCopier::Create(*source, *dest, {.chunk_size = kChunk, .max_in_flight = 4}));

  // Every other 256 KiB stretch, in jobs of 4 KiB to 256 KiB, so that jobs
  // share the chunk slots and some take several chunks.
  JobSet jobs;
  Bytes expected(kSize);
  uint64_t chunks = 0;
  const uint64_t lengths[] = {4096, 65536, 131072 + 4096, 262144 - 4096 - 65536 - 131072};
  for (uint64_t stretch = 0; stretch < kSize; stretch += 512 << 10) {
    uint64_t offset = stretch;
    for (uint64_t length : lengths) {
      jobs.Add(offset, length);
      std::memcpy(expected.data() + offset, source_bytes.data() + offset, length);
      chunks += (length + kChunk - 1) / kChunk;
      offset += length;
    }
  }
  std::deque<BoundedThread> threads;
  for (size_t t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < jobs.size(); i += 2) copier->Copy(jobs.job(i));
    });
  }
  for (BoundedThread& thread : threads) thread.Join();
  jobs.Wait();
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(jobs.completions(i), 1) << "job " << i;
    EXPECT_TRUE(jobs.status(i).ok()) << jobs.status(i);
  }
  EXPECT_TRUE(FileBytes(dest_path, kSize) == expected);
  const UringCopier::Stats stats = copier->stats();
  EXPECT_EQ(stats.chunks, chunks);
  EXPECT_LE(stats.max_in_flight, 4u);
  EXPECT_GE(stats.max_in_flight, 2u) << "chunks were not pipelined";
  EXPECT_EQ(stats.fallback_jobs, 0u);
}

// Zero detection: all-zero chunks become punched holes over stale content.
TEST_F(UringCopierTest, ZeroChunksArePunchedNotWritten) {
  constexpr uint64_t kSize = 1 << 20, kChunk = 64 << 10;
  for (bool detect : {true, false}) {
    Bytes source_bytes = RandomBytes(kSize, 5);
    std::fill(source_bytes.begin() + 2 * kChunk, source_bytes.begin() + 4 * kChunk, std::byte{0});
    source_bytes[5 * kChunk + 7] = std::byte{0};
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(NewFile(source_bytes), {}));
    const std::string dest_path = NewFile(RandomBytes(kSize, 6));
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
        auto copier, UringCopier::Create(*source, *dest,
                                         {.chunk_size = kChunk, .detect_zeroes = detect}));
    JobSet jobs;
    jobs.Add(0, kSize);
    copier->Copy(jobs.job(0));
    jobs.Wait();
    ASSERT_TRUE(jobs.status(0).ok()) << jobs.status(0);
    EXPECT_TRUE(FileBytes(dest_path, kSize) == source_bytes);
    EXPECT_EQ(copier->stats().zeroed_chunks, detect ? 2u : 0u);
    EXPECT_EQ(HoleBytes(*DescribeAllocation(*dest, 0, kSize)), detect ? 2 * kChunk : 0u);
  }
}

TEST_F(UringCopierTest, CopiesWithPlainBuffersToo) {
  const Bytes source_bytes = RandomBytes(1 << 20, 2);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(NewFile(source_bytes), {}));
  const std::string dest_path = NewFile(Bytes(1 << 20));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
      auto copier,
      UringCopier::Create(*source, *dest, {.chunk_size = 4096, .register_buffers = false}));
  JobSet jobs;
  jobs.Add(0, 1 << 20);
  copier->Copy(jobs.job(0));
  jobs.Wait();
  EXPECT_TRUE(jobs.status(0).ok()) << jobs.status(0);
  EXPECT_FALSE(copier->stats().registered_buffers);
  EXPECT_EQ(copier->stats().chunks, 256u);
  EXPECT_TRUE(FileBytes(dest_path, 1 << 20) == source_bytes);
}

TEST_F(UringCopierTest, DirectDevicesCopyAlignedJobsOnTheRingAndOthersThroughTheFallback) {
  constexpr uint64_t kSize = 1 << 20;
  const Bytes source_bytes = RandomBytes(kSize, 3);
  const UringDevice::Options direct = {.direct = true, .direct_io = {.min_alignment = 4096}};
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(NewFile(source_bytes), direct));
  const std::string dest_path = NewFile(Bytes(kSize));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, direct));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto copier,
                                 UringCopier::Create(*source, *dest, {.chunk_size = 64 << 10}));
  JobSet jobs;
  jobs.Add(0, 512 << 10);
  jobs.Add(600 << 10, 1536);  // not 4 KiB aligned
  for (size_t i = 0; i < jobs.size(); ++i) copier->Copy(jobs.job(i));
  jobs.Wait();
  EXPECT_TRUE(jobs.status(0).ok()) << jobs.status(0);
  EXPECT_TRUE(jobs.status(1).ok()) << jobs.status(1);
  EXPECT_EQ(copier->stats().chunks, 8u);
  EXPECT_EQ(copier->stats().fallback_jobs, 1u);
  Bytes expected(kSize);
  std::memcpy(expected.data(), source_bytes.data(), 512 << 10);
  std::memcpy(expected.data() + (600 << 10), source_bytes.data() + (600 << 10), 1536);
  EXPECT_TRUE(FileBytes(dest_path, kSize) == expected);
}

TEST_F(UringCopierTest, EveryWriteWaitsForItsRead) {
  // Slow O_DIRECT reads and fast buffered writes, with the submission queue
  // full: a write that ran before its read landed would copy stale bytes.
  constexpr uint64_t kSize = 1 << 20;
  for (uint32_t round = 0; round < 8; ++round) {
    const Bytes source_bytes = RandomBytes(kSize, 100 + round);
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source,
                                   UringDevice::Open(NewFile(source_bytes), {.direct = true}));
    const std::string dest_path = NewFile(Bytes(kSize));
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
        auto copier,
        UringCopier::Create(*source, *dest, {.chunk_size = 64 << 10, .max_in_flight = 8}));
    JobSet jobs;
    copier->Copy(jobs.Add(0, kSize));
    jobs.Wait();
    ASSERT_TRUE(jobs.status(0).ok()) << jobs.status(0);
    ASSERT_TRUE(FileBytes(dest_path, kSize) == source_bytes) << "round " << round;
  }
}

TEST_F(UringCopierTest, FailsJobsItCannotCopy) {
  constexpr uint64_t kSize = 1 << 20;
  const std::string source_path = NewFile(RandomBytes(kSize, 4));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(source_path, {}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(NewFile(Bytes(kSize)), {}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto copier,
                                 UringCopier::Create(*source, *dest, {.chunk_size = 64 << 10}));
  JobSet jobs;
  jobs.Add(kSize - 4096, 8192);  // beyond the end
  // The source shrinks under the copier: the chunk across the new end reads
  // short, and its remainder finds the end of the file.
  ASSERT_EQ(::truncate(source_path.c_str(), kSize / 2 + 2048), 0);
  jobs.Add(kSize / 2 - (64 << 10), 128 << 10);
  for (size_t i = 0; i < jobs.size(); ++i) copier->Copy(jobs.job(i));
  jobs.Wait();
  EXPECT_EQ(jobs.completions(0), 1);
  EXPECT_EQ(jobs.status(0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(jobs.completions(1), 1);
  EXPECT_EQ(jobs.status(1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(jobs.status(1).message(), HasSubstr(absl::StrCat("offset ", kSize / 2 + 2048)));
  EXPECT_EQ(copier->stats().short_transfers, 1u);
  EXPECT_EQ(UringCopier::Create(*dest, *source, {.max_in_flight = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(UringCopierTest, DestructionCompletesQueuedJobs) {
  constexpr uint64_t kSize = 4 << 20;
  const Bytes source_bytes = RandomBytes(kSize, 5);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source, UringDevice::Open(NewFile(source_bytes), {}));
  const std::string dest_path = NewFile(Bytes(kSize));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
  JobSet jobs;
  {
    BLKCLONE_ASSIGN_DEVICE_OR_SKIP(
        auto copier, UringCopier::Create(*source, *dest, {.chunk_size = 4096, .max_in_flight = 1}));
    for (uint64_t offset = 0; offset < kSize; offset += 64 << 10) {
      copier->Copy(jobs.Add(offset, 64 << 10));
    }
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(jobs.completions(i), 1) << "job " << i;
    EXPECT_TRUE(jobs.status(i).ok()) << jobs.status(i);
  }
  EXPECT_TRUE(FileBytes(dest_path, kSize) == source_bytes);
}

TEST_F(UringCopierTest, HydratesACloneOfUringDevices) {
  constexpr uint64_t kRegion = 64 << 10, kSize = 16 * kRegion;
  const Bytes source_bytes = RandomBytes(kSize, 6);
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto source,
                                 UringDevice::Open(NewFile(source_bytes), {.read_only = true}));
  const std::string dest_path = NewFile(Bytes(kSize));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto dest, UringDevice::Open(dest_path, {}));
  BLKCLONE_ASSIGN_DEVICE_OR_SKIP(auto copier, UringCopier::Create(*source, *dest, {}));
  InMemoryMetadata metadata(*MakeCloneGeometry(source->info(), dest->info(), kRegion));
  auto clone =
      Clone<UringDevice, UringDevice, UringCopier>::Create(*source, *dest, *copier, metadata, {});
  ASSERT_TRUE(clone.ok()) << clone.status();

  // Partial writes hydrate their regions through the copier; a whole-region
  // write is its own hydration.
  Bytes expected = source_bytes;
  struct Write {
    uint64_t offset, length;
  } writes[] = {
      {4096, 4096}, {3 * kRegion, kRegion}, {5 * kRegion + 512, 1024}, {9 * kRegion - 4096, 8192}};
  uint32_t seed = 10;
  for (const Write& w : writes) {
    const Bytes data = RandomBytes(w.length, seed++);
    ASSERT_TRUE(WriteAt(**clone, w.offset, data).ok());
    std::memcpy(expected.data() + w.offset, data.data(), w.length);
  }
  Bytes back(kSize);
  ASSERT_TRUE(ReadAt(**clone, 0, back).ok());
  EXPECT_TRUE(back == expected);
  ASSERT_TRUE((*clone)->Close().ok());
  EXPECT_EQ(copier->stats().chunks, 4u) << "regions 0, 5, 8 and 9 hydrate by copying";

  const Bytes on_dest = FileBytes(dest_path, kSize);
  for (uint64_t region : {0, 3, 5, 8, 9}) {
    EXPECT_TRUE(metadata.map().IsSet(region)) << "region " << region;
    EXPECT_EQ(
        std::memcmp(on_dest.data() + region * kRegion, expected.data() + region * kRegion, kRegion),
        0)
        << "region " << region;
  }
  EXPECT_FALSE(metadata.map().IsSet(1));
  EXPECT_TRUE(std::all_of(on_dest.begin() + kRegion, on_dest.begin() + 2 * kRegion,
                          [](std::byte b) { return b == std::byte{0}; }))
      << "an unhydrated region was copied";
}

}  // namespace
}  // namespace blkclone

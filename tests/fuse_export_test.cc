// The FUSE export: ByteIo and RangeLock on their own, then a device mounted as
// a file and used through system calls (pread/pwrite aligned and not, fsync,
// fallocate, truncate, many threads), a clone behind it, and the dm-clone
// workflow with a loop device and ext4 on top. Tests that mount skip, saying
// why, without root, /dev/fuse or the tools they run.
#include "blkclone/fuse_export.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "bounded_wait.hpp"
#include "byte_io.hpp"
#include "controlled_copier.hpp"
#include "gtest/gtest.h"
#include "range_lock.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::AwaitOrAbort;
using testing::BoundedThread;
using testing::RandomBytes;
using testing::Slice;
using Bytes = std::vector<std::byte>;
using testing::TempDir;

// ---------------------------------------------------------------------------
// RangeLock and ByteIo, without FUSE.

TEST(RangeLockTest, SharedHoldersOverlapAndExclusiveOnesWaitInTurn) {
  internal::RangeLock lock;
  std::vector<int> granted;
  const auto holder = [&granted](uint64_t begin, uint64_t end, bool exclusive, int id) {
    internal::RangeLock::Holder h;
    h.begin = begin;
    h.end = end;
    h.exclusive = exclusive;
    h.on_grant = [&granted, id] { granted.push_back(id); };
    return h;
  };
  internal::RangeLock::Holder a = holder(0, 10, false, 1);
  internal::RangeLock::Holder b = holder(5, 15, false, 2);
  internal::RangeLock::Holder x = holder(8, 9, true, 3);
  internal::RangeLock::Holder c = holder(8, 20, false, 4);   // after x, overlapping it
  internal::RangeLock::Holder d = holder(30, 40, false, 5);  // overlaps nobody
  lock.Acquire(a);
  lock.Acquire(b);
  lock.Acquire(x);
  lock.Acquire(c);
  lock.Acquire(d);
  EXPECT_EQ(granted, (std::vector<int>{1, 2, 5}));  // x waits for a and b, c behind x
  lock.Release(a);
  EXPECT_EQ(granted.size(), 3u);
  lock.Release(b);
  EXPECT_EQ(granted, (std::vector<int>{1, 2, 5, 3}));
  lock.Release(x);
  EXPECT_EQ(granted, (std::vector<int>{1, 2, 5, 3, 4}));
  lock.Release(c);
  lock.Release(d);
}

// A device that takes at most `max_transfer` bytes per read or write.
class LimitedDevice {
 public:
  LimitedDevice(AnyBlockDevice inner, uint64_t max_transfer)
      : inner_(std::move(inner)), info_(inner_.info()) {
    info_.max_transfer = max_transfer;
  }
  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept {
    if (absl::Status status = ValidateRequest(info_, request); !status.ok())
      return request.Complete(std::move(status));
    inner_.Submit(request);
  }

 private:
  AnyBlockDevice inner_;
  DeviceInfo info_;
};

// Waits for one ByteIo call.
struct Outcome {
  internal::Mutex mu;
  internal::CondVar cv;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);
  Bytes bytes ABSL_GUARDED_BY(mu);

  internal::Done Callback() {
    return [this](absl::Status s) { Set(std::move(s), {}); };
  }
  internal::ByteIo::ReadDone ReadCallback() {
    return [this](absl::Status s, std::span<const std::byte> b) { Set(std::move(s), b); };
  }
  void Set(absl::Status s, std::span<const std::byte> b) {
    internal::MutexLock lock(mu);
    status = std::move(s);
    bytes.assign(b.begin(), b.end());
    done = true;
    cv.SignalAll();
  }
  absl::Status Wait() {
    internal::MutexLock lock(mu);
    AwaitOrAbort(
        cv, mu, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done; },
        "a request's completion");
    return status;
  }
  Bytes Read() {
    EXPECT_TRUE(Wait().ok());
    internal::MutexLock lock(mu);
    return bytes;
  }
};

// Waits for a number of callbacks, keeping the first error.
struct Countdown {
  internal::Mutex mu;
  internal::CondVar cv;
  int left ABSL_GUARDED_BY(mu);
  absl::Status first_error ABSL_GUARDED_BY(mu);

  explicit Countdown(int count) : left(count) {}
  internal::Done Callback() {
    return [this](absl::Status s) {
      internal::MutexLock lock(mu);
      if (first_error.ok()) first_error = std::move(s);
      if (--left == 0) cv.SignalAll();
    };
  }
  absl::Status Wait() {
    internal::MutexLock lock(mu);
    AwaitOrAbort(
        cv, mu, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return left == 0; }, "every callback");
    return first_error;
  }
};

class ByteIoTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = 256 << 10;

  void SetUp() override {
    memory_ = *MemoryDevice::Create({.size = kSize, .logical_block_size = 4096});
    model_ = RandomBytes(kSize, 3);
    memory_->Fill(0, model_);
  }

  std::unique_ptr<MemoryDevice> memory_;
  Bytes model_;
};

TEST_F(ByteIoTest, CutsRequestsAtTheTransferLimitAndReadsUnalignedBytes) {
  CountingDevice counted(*memory_);
  LimitedDevice limited(AnyBlockDevice::Borrow(counted), 8192);
  AnyBlockDevice device = AnyBlockDevice::Borrow(limited);
  internal::ByteIo io(device);
  counted.SetObserver([](const Request& r) { EXPECT_LE(r.length, 8192u) << OpName(r.op); });

  Outcome read;
  io.Read(1000, 50000, read.ReadCallback());
  EXPECT_EQ(read.Read(), Slice(model_, 1000, 50000));

  const Bytes data = RandomBytes(30000, 4);
  Outcome write;
  io.Write(4096 * 3, data, write.Callback());  // aligned start, unaligned end
  ASSERT_TRUE(write.Wait().ok());
  std::copy(data.begin(), data.end(), model_.begin() + 4096 * 3);
  EXPECT_EQ(memory_->Contents(), model_);
}

// Writes that share blocks but not bytes, all in flight at once over a device
// that completes late and out of order: the range lock must keep every
// read-modify-write from undoing another.
TEST_F(ByteIoTest, UnalignedWritesSharingBlocksAllLand) {
  DelayDevice delayed(*memory_, {.max_delay = std::chrono::microseconds(300), .worker_threads = 3});
  AnyBlockDevice device = AnyBlockDevice::Borrow(delayed);
  internal::ByteIo io(device);
  constexpr int kWrites = 200;
  constexpr uint64_t kPiece = 700;  // every block holds parts of several writes
  Countdown writes(kWrites);
  std::deque<BoundedThread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kWrites; i += 4)
        io.Write(123 + i * kPiece, RandomBytes(kPiece, 100 + i), writes.Callback());
    });
  }
  for (BoundedThread& thread : threads) thread.Join();
  ASSERT_TRUE(writes.Wait().ok());
  for (int i = 0; i < kWrites; ++i) {
    const Bytes data = RandomBytes(kPiece, 100 + i);
    std::copy(data.begin(), data.end(), model_.begin() + 123 + i * kPiece);
  }
  EXPECT_EQ(memory_->Contents(), model_);
}

TEST_F(ByteIoTest, PunchHoleZeroesAfterADiscardThatKeepsData) {
  auto memory = *MemoryDevice::Create(
      {.size = kSize,
       .logical_block_size = 4096,
       .caps = {.discard = true, .discard_zeroes_data = false, .write_zeroes = true}});
  memory->Fill(0, model_);
  std::vector<Op> ops;
  CountingDevice counted(*memory);
  counted.SetObserver([&ops](const Request& r) { ops.push_back(r.op); });
  AnyBlockDevice device = AnyBlockDevice::Borrow(counted);
  internal::ByteIo io(device);
  Outcome punch;
  io.PunchHole(8192, 16384, punch.Callback());
  ASSERT_TRUE(punch.Wait().ok());
  EXPECT_EQ(ops, (std::vector<Op>{Op::kDiscard, Op::kWriteZeroes}));
  std::fill(model_.begin() + 8192, model_.begin() + 8192 + 16384, std::byte{0});
  EXPECT_EQ(memory->Contents(), model_);
}

TEST_F(ByteIoTest, ZeroingNeedsTheDeviceToZero) {
  auto memory = *MemoryDevice::Create({.size = kSize, .caps = {}});
  AnyBlockDevice device = AnyBlockDevice::Borrow(*memory);
  internal::ByteIo io(device);
  Outcome punch, zero;
  io.PunchHole(0, 4096, punch.Callback());
  io.ZeroRange(0, 4096, zero.Callback());
  EXPECT_EQ(punch.Wait().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(zero.Wait().code(), absl::StatusCode::kUnimplemented);
}

// ---------------------------------------------------------------------------
// The export, through the kernel.

std::string FindCommand(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string dirs = absl::StrCat(path != nullptr ? path : "", ":/usr/sbin:/sbin");
  for (absl::string_view dir : absl::StrSplit(dirs, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Why the export cannot be mounted here; empty if it can.
std::string FuseUnavailable() {
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is missing or not accessible";
  if (::geteuid() != 0) return "mounting and loop devices need root";
  if (FindCommand("fusermount3").empty()) return "fusermount3 is not installed";
  return "";
}

struct CommandResult {
  int status = -1;
  std::string output;
};

// Runs a shell command line, bounded to 60 s, with its output captured.
CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  const std::string line =
      absl::StrCat("PATH=\"$PATH:/usr/sbin:/sbin\" timeout -k 5 60 ", command, " 2>&1");
  FILE* pipe = ::popen(line.c_str(), "r");
  if (pipe == nullptr) return result;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0) result.output.append(chunk, n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool IsMountPoint(const std::string& path) {
  std::ifstream mounts("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mounts, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() > 4 && fields[4] == path) return true;
  }
  return false;
}

// Undo steps (unmounts, loop detaches), run last first when the test ends,
// however it ends; Pop runs the latest one early, as part of the test.
class Cleanup {
 public:
  ~Cleanup() {
    while (!steps_.empty()) (void)Pop();
  }
  void Push(std::string command) { steps_.push_back(std::move(command)); }
  CommandResult Pop() {
    CommandResult result = RunCommand(steps_.back());
    steps_.pop_back();
    return result;
  }

 private:
  std::vector<std::string> steps_;
};

// An open file descriptor.
class Fd {
 public:
  explicit Fd(const std::string& path, int flags = O_RDWR) : fd_(::open(path.c_str(), flags)) {}
  ~Fd() { Close(); }
  int get() const { return fd_; }
  int Close() {
    const int result = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

ssize_t PWrite(const Fd& fd, const Bytes& data, uint64_t offset) {
  return ::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset));
}

Bytes PRead(const Fd& fd, uint64_t length, uint64_t offset) {
  Bytes data(length);
  const ssize_t n = ::pread(fd.get(), data.data(), length, static_cast<off_t>(offset));
  EXPECT_GE(n, 0) << std::strerror(errno);
  data.resize(n < 0 ? 0 : n);
  return data;
}

// A fresh mount point per test; the lazy unmount in the guard is the last
// resort should the export fail to unmount itself.
class FuseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = FuseUnavailable(); !reason.empty()) GTEST_SKIP() << reason;
    auto dir = TempDir::Create("fuse_export_test");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
    mountpoint_ = (dir_->path() / "mnt").string();
    std::filesystem::create_directory(mountpoint_);
    guard_ = std::make_unique<Cleanup>();
    guard_->Push(absl::StrCat("sh -c 'grep -q \" ", mountpoint_,
                              " \" /proc/self/mountinfo && fusermount3 -u -z ", mountpoint_,
                              " || true'"));
  }

  void TearDown() override {
    if (fuse_ != nullptr) {
      EXPECT_TRUE(fuse_->Unmount().ok());
    }
    fuse_.reset();
    if (!mountpoint_.empty()) {
      EXPECT_FALSE(IsMountPoint(mountpoint_));
    }
    while (!owned_.empty()) owned_.pop_back();  // wrappers before what they wrap
  }

  // Keeps `object` (a device, a copier, ...) until the export is unmounted.
  template <class T>
  T* Own(std::unique_ptr<T> object) {
    T* raw = object.get();
    owned_.push_back(std::shared_ptr<T>(std::move(object)));
    return raw;
  }

  void Mount(AnyBlockDevice device) {
    auto fuse = FuseExport::Mount(std::move(device), mountpoint_);
    ASSERT_TRUE(fuse.ok()) << fuse.status();
    fuse_ = std::move(*fuse);
    file_ = fuse_->file_path();
  }

  std::unique_ptr<TempDir> dir_;  // destroyed last, once nothing is mounted in it
  std::unique_ptr<Cleanup> guard_;
  std::string mountpoint_;
  std::string file_;
  std::vector<std::shared_ptr<void>> owned_;  // in creation order
  std::unique_ptr<FuseExport> fuse_;
};

// A memory device with 4 KiB blocks, counted, filled with known bytes.
class FuseExportTest : public FuseTest {
 protected:
  static constexpr uint64_t kSize = 1 << 20;

  void SetUp() override {
    FuseTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    memory_ = Own(*MemoryDevice::Create({.size = kSize, .logical_block_size = 4096}));
    model_ = RandomBytes(kSize, 1);
    memory_->Fill(0, model_);
    counted_ = Own(std::make_unique<CountingDevice<MemoryDevice>>(*memory_));
    Mount(AnyBlockDevice::Borrow(*counted_));
  }

  // Writes through the file, and into the model.
  void WriteAt(const Fd& fd, uint64_t offset, const Bytes& data) {
    ASSERT_EQ(PWrite(fd, data, offset), static_cast<ssize_t>(data.size())) << std::strerror(errno);
    std::copy(data.begin(), data.end(), model_.begin() + offset);
  }
  void ZeroModel(uint64_t offset, uint64_t length) {
    std::fill(model_.begin() + offset, model_.begin() + offset + length, std::byte{0});
  }

  MemoryDevice* memory_ = nullptr;
  CountingDevice<MemoryDevice>* counted_ = nullptr;
  Bytes model_;
};

TEST_F(FuseExportTest, DirectoryHoldsOneFileOfTheDeviceSize) {
  struct stat attr;
  ASSERT_EQ(::stat(file_.c_str(), &attr), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISREG(attr.st_mode));
  EXPECT_EQ(static_cast<uint64_t>(attr.st_size), kSize);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(mountpoint_))
    names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"disk"});
  EXPECT_EQ(file_, mountpoint_ + "/disk");
}

TEST_F(FuseExportTest, AlignedWritesGoStraightToTheDevice) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  counted_->Reset();
  WriteAt(fd, 8192, RandomBytes(64 << 10, 2));
  EXPECT_EQ(counted_->Snapshot().submitted[Op::kRead], 0u) << "no read-modify-write";
  EXPECT_EQ(memory_->Contents(), model_);
  EXPECT_EQ(PRead(fd, 64 << 10, 8192), Slice(model_, 8192, 64 << 10));
}

TEST_F(FuseExportTest, UnalignedWritesKeepTheBytesAroundThem) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  WriteAt(fd, 5000, RandomBytes(1000, 3));    // inside one block
  WriteAt(fd, 12345, RandomBytes(10000, 4));  // across blocks, both ends partial
  WriteAt(fd, 40960, RandomBytes(4097, 5));   // aligned start, one byte over
  WriteAt(fd, kSize - 3, RandomBytes(3, 6));  // the last bytes
  EXPECT_EQ(memory_->Contents(), model_);
  EXPECT_EQ(PRead(fd, 777, 4321), Slice(model_, 4321, 777));
  EXPECT_EQ(PRead(fd, 1, kSize - 1), Slice(model_, kSize - 1, 1));
}

TEST_F(FuseExportTest, TheFileEndsWhereTheDeviceEnds) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  EXPECT_EQ(PRead(fd, 8192, kSize - 100), Slice(model_, kSize - 100, 100));
  EXPECT_TRUE(PRead(fd, 4096, kSize).empty());
  EXPECT_EQ(PWrite(fd, RandomBytes(4096, 7), kSize), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(PWrite(fd, RandomBytes(4096, 7), kSize - 1000), 1000);
}

TEST_F(FuseExportTest, FsyncAndCloseFlushTheDevice) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  WriteAt(fd, 0, RandomBytes(4096, 8));
  counted_->Reset();
  ASSERT_EQ(::fsync(fd.get()), 0) << std::strerror(errno);
  EXPECT_EQ(counted_->Snapshot().completed[Op::kFlush], 1u);
  ASSERT_EQ(::fdatasync(fd.get()), 0) << std::strerror(errno);
  EXPECT_EQ(counted_->Snapshot().completed[Op::kFlush], 2u);
  ASSERT_EQ(fd.Close(), 0);
  EXPECT_EQ(counted_->Snapshot().completed[Op::kFlush], 3u);
}

TEST_F(FuseExportTest, PunchHoleDiscardsAndReadsBackZeroes) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  counted_->Reset();
  constexpr int kPunch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  ASSERT_EQ(::fallocate(fd.get(), kPunch, 8192, 65536), 0) << std::strerror(errno);
  ZeroModel(8192, 65536);
  Counts counts = counted_->Snapshot();
  EXPECT_EQ(counts.bytes_completed[Op::kDiscard], 65536u);
  EXPECT_EQ(counts.submitted[Op::kWriteZeroes], 0u) << "this device's discards zero";
  // Partial blocks at the ends are zeroed by writes, the whole ones discarded.
  ASSERT_EQ(::fallocate(fd.get(), kPunch, 100000, 10000), 0) << std::strerror(errno);
  ZeroModel(100000, 10000);
  EXPECT_EQ(counted_->Snapshot().bytes_completed[Op::kDiscard], 65536u + 4096u);
  EXPECT_EQ(memory_->Contents(), model_);
  EXPECT_EQ(PRead(fd, 65536, 8192), Bytes(65536));
}

TEST_F(FuseExportTest, ZeroRangeWritesZeroes) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  counted_->Reset();
  ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 4096, 16384), 0) << std::strerror(errno);
  ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 30001, 9000), 0)
      << std::strerror(errno);
  ZeroModel(4096, 16384);
  ZeroModel(30001, 9000);
  Counts counts = counted_->Snapshot();
  EXPECT_EQ(counts.bytes_completed[Op::kWriteZeroes], 16384u + 4096u);
  EXPECT_EQ(counts.submitted[Op::kDiscard], 0u);
  EXPECT_EQ(memory_->Contents(), model_);
}

TEST_F(FuseExportTest, OtherFallocateModesAndGrowingAreRefused) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  EXPECT_EQ(::fallocate(fd.get(), 0, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  EXPECT_EQ(::fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, kSize - 4096, 8192), -1);
  EXPECT_EQ(errno, EFBIG);
  // With KEEP_SIZE the part beyond the end is ignored.
  EXPECT_EQ(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kSize - 4096, 8192),
            0);
  ZeroModel(kSize - 4096, 4096);
  EXPECT_EQ(memory_->Contents(), model_);
}

TEST_F(FuseExportTest, TheSizeCannotChange) {
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  EXPECT_EQ(::ftruncate(fd.get(), kSize - 4096), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd.get(), kSize * 2), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd.get(), kSize), 0) << std::strerror(errno);
  EXPECT_EQ(::open(file_.c_str(), O_RDWR | O_TRUNC), -1);
  EXPECT_EQ(memory_->Contents(), model_);
}

TEST_F(FuseExportTest, StopEndsWaitAndUnmountCleansUp) {
  BoundedThread stopper([this] { fuse_->Stop(); });
  fuse_->Wait();
  stopper.Join();
  EXPECT_TRUE(fuse_->Unmount().ok());
  EXPECT_FALSE(IsMountPoint(mountpoint_));
  EXPECT_TRUE(fuse_->Unmount().ok()) << "idempotent";
}

TEST_F(FuseExportTest, AnOutsideUnmountEndsWait) {
  ASSERT_EQ(RunCommand("fusermount3 -u " + mountpoint_).status, 0);
  fuse_->Wait();
  EXPECT_TRUE(fuse_->Unmount().ok());
}

// Readers and writers on their own descriptors, over a device that completes
// late and out of order; writers share blocks (not bytes) with their neighbours.
TEST_F(FuseTest, ManyReadersAndWritersInParallel) {
  constexpr uint64_t kSize = 4 << 20;
  MemoryDevice* memory = Own(*MemoryDevice::Create({.size = kSize, .logical_block_size = 4096}));
  Bytes model = RandomBytes(kSize, 10);
  memory->Fill(0, model);
  auto* delayed = Own(std::make_unique<DelayDevice<MemoryDevice>>(
      *memory, DelayOptions{.max_delay = std::chrono::microseconds(200), .worker_threads = 3}));
  Mount(AnyBlockDevice::Borrow(*delayed));

  constexpr int kWriters = 4;
  constexpr int kReaders = 4;
  constexpr int kWritesEach = 64;
  constexpr uint64_t kPiece = 3000;  // writer w owns pieces w, w + kWriters, ...
  const auto piece = [](int writer, int i) {
    const uint64_t index = static_cast<uint64_t>(i) * kWriters + writer;
    return std::pair<uint64_t, Bytes>(17 + index * kPiece, RandomBytes(kPiece, 1000 + index));
  };
  std::atomic<int> failures{0};
  std::deque<BoundedThread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      Fd fd(file_);
      for (int i = 0; i < kWritesEach; ++i) {
        auto [offset, data] = piece(w, i);
        if (PWrite(fd, data, offset) != static_cast<ssize_t>(kPiece)) ++failures;
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      Fd fd(file_, O_RDONLY);
      std::mt19937 rng(r);
      for (int i = 0; i < 64; ++i) {
        const uint64_t offset = rng() % kSize;
        const uint64_t length = 1 + rng() % (256 << 10);
        if (PRead(fd, length, offset).size() != std::min(length, kSize - offset)) ++failures;
      }
    });
  }
  for (BoundedThread& thread : threads) thread.Join();
  EXPECT_EQ(failures.load(), 0);
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kWritesEach; ++i) {
      auto [offset, data] = piece(w, i);
      std::copy(data.begin(), data.end(), model.begin() + offset);
    }
  }
  Fd fd(file_, O_RDONLY);
  EXPECT_EQ(PRead(fd, kSize, 0), model);
  EXPECT_EQ(memory->Contents(), model);
  ASSERT_EQ(fd.Close(), 0);
  EXPECT_TRUE(fuse_->Unmount().ok());
}

// A clone over memory devices, mounted; its copier counts the copies.
class FuseCloneTest : public FuseTest {
 protected:
  static constexpr uint64_t kRegion = 64 << 10;
  using Copier = ControlledCopier<BufferedCopier<MemoryDevice, MemoryDevice>>;
  using TestClone = Clone<MemoryDevice, MemoryDevice, Copier>;

  // A clone of `source_bytes`, exported.
  void MountClone(const Bytes& source_bytes) {
    source_ = Own(*MemoryDevice::Create({.size = source_bytes.size(), .logical_block_size = 4096}));
    source_->Fill(0, source_bytes);
    MemoryDevice* dest =
        Own(*MemoryDevice::Create({.size = source_bytes.size(), .logical_block_size = 4096}));
    metadata_ = Own(std::make_unique<InMemoryMetadata>(
        *MakeCloneGeometry(source_->info(), dest->info(), kRegion)));
    auto* base = Own(std::make_unique<BufferedCopier<MemoryDevice, MemoryDevice>>(*source_, *dest));
    copier_ = Own(std::make_unique<Copier>(*base));
    auto clone = TestClone::Create(*source_, *dest, *copier_, *metadata_, {});
    ASSERT_TRUE(clone.ok()) << clone.status();
    Mount(AnyBlockDevice::Borrow(*Own(std::move(*clone))));
  }

  uint64_t Hydrated() const { return metadata_->map().CountSet(); }

  MemoryDevice* source_ = nullptr;
  InMemoryMetadata* metadata_ = nullptr;
  Copier* copier_ = nullptr;
};

TEST_F(FuseCloneTest, PunchHoleHydratesWholeRegionsWithoutCopying) {
  const Bytes source = RandomBytes(16 * kRegion, 20);
  MountClone(source);
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  // Regions 2..5 whole; the clone's discards do not zero, so zeroes follow.
  ASSERT_EQ(
      ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kRegion, 4 * kRegion),
      0)
      << std::strerror(errno);
  EXPECT_EQ(copier_->jobs(), 0);
  EXPECT_EQ(Hydrated(), 4u);
  for (uint64_t region = 2; region < 6; ++region) EXPECT_TRUE(metadata_->map().IsSet(region));
  EXPECT_EQ(PRead(fd, 4 * kRegion, 2 * kRegion), Bytes(4 * kRegion));
  EXPECT_EQ(PRead(fd, kRegion, 0), Slice(source, 0, kRegion))
      << "untouched regions read the source";
}

TEST_F(FuseCloneTest, WritesHydrateAndFsyncCommits) {
  const Bytes source = RandomBytes(16 * kRegion, 21);
  MountClone(source);
  Fd fd(file_);
  ASSERT_GE(fd.get(), 0) << std::strerror(errno);
  const Bytes data = RandomBytes(5000, 22);
  ASSERT_EQ(PWrite(fd, data, kRegion + 100), 5000);
  EXPECT_EQ(copier_->jobs(), 1) << "a partial write hydrates its region first";
  const uint64_t commits = metadata_->commits();
  ASSERT_EQ(::fsync(fd.get()), 0) << std::strerror(errno);
  EXPECT_GT(metadata_->commits(), commits);
  EXPECT_TRUE(metadata_->CommittedRegions()[1]);
  Bytes expected = Slice(source, kRegion, kRegion);
  std::copy(data.begin(), data.end(), expected.begin() + 100);
  EXPECT_EQ(PRead(fd, kRegion, kRegion), expected);
}

// The kernel documentation's dm-clone workflow, in user space: a source
// holding ext4, cloned without hydration, the clone attached to a loop device
// and mounted; fstrim hydrates the free space without copying it; new files
// are written and survive; the file system checks clean; the source is untouched.
TEST_F(FuseCloneTest, LoopDeviceCarriesAnExt4FileSystem) {
  for (const char* tool : {"losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "fstrim"}) {
    if (FindCommand(tool).empty()) GTEST_SKIP() << tool << " is not installed";
  }
  constexpr uint64_t kSize = 64 << 20;
  const std::filesystem::path seed = dir_->path() / "seed";
  std::filesystem::create_directory(seed);
  const Bytes old_file = RandomBytes(300 << 10, 30);
  std::ofstream(seed / "old", std::ios::binary)
      .write(reinterpret_cast<const char*>(old_file.data()), old_file.size());
  absl::StatusOr<std::string> image = dir_->CreateFile("source.img", kSize);
  ASSERT_TRUE(image.ok()) << image.status();
  CommandResult mkfs =
      RunCommand(absl::StrCat("mkfs.ext4 -q -F -b 4096 -d ", seed.string(), " ", *image));
  ASSERT_EQ(mkfs.status, 0) << mkfs.output;
  Bytes source(kSize);
  std::ifstream(*image, std::ios::binary).read(reinterpret_cast<char*>(source.data()), kSize);
  MountClone(source);

  Cleanup cleanup;
  CommandResult attach = RunCommand("losetup --find --show " + file_);
  ASSERT_EQ(attach.status, 0) << attach.output;
  const std::string loop = attach.output.substr(0, attach.output.find_first_of(" \n"));
  cleanup.Push("losetup -d " + loop);
  const std::string fs = (dir_->path() / "fs").string();
  std::filesystem::create_directory(fs);
  CommandResult mount = RunCommand(absl::StrCat("mount -t ext4 ", loop, " ", fs));
  ASSERT_EQ(mount.status, 0) << mount.output;
  cleanup.Push(absl::StrCat("sh -c 'umount ", fs, " || umount -l ", fs, "'"));

  Bytes read_back(old_file.size());
  std::ifstream(fs + "/old", std::ios::binary)
      .read(reinterpret_cast<char*>(read_back.data()), read_back.size());
  EXPECT_EQ(read_back, old_file);

  const uint64_t copies_before = copier_->jobs();
  const uint64_t hydrated_before = Hydrated();
  CommandResult trim = RunCommand("fstrim " + fs);
  ASSERT_EQ(trim.status, 0) << trim.output;
  // Free extents' partial regions at either end are copied (they must read
  // back zeroes), everything between is not.
  const uint64_t copied = copier_->jobs() - copies_before;
  const uint64_t hydrated = Hydrated() - hydrated_before;
  EXPECT_GT(hydrated, kSize / kRegion / 2) << "most of a nearly empty file system is free";
  EXPECT_LT(copied, hydrated / 4);

  const Bytes new_file = RandomBytes(2 << 20, 31);
  std::ofstream(fs + "/new", std::ios::binary)
      .write(reinterpret_cast<const char*>(new_file.data()), new_file.size());
  ASSERT_EQ(RunCommand("sync").status, 0);
  ASSERT_EQ(cleanup.Pop().status, 0) << "umount";
  CommandResult check = RunCommand("e2fsck -fn " + loop);
  EXPECT_EQ(check.status, 0) << check.output;

  mount = RunCommand(absl::StrCat("mount -t ext4 -o ro ", loop, " ", fs));
  ASSERT_EQ(mount.status, 0) << mount.output;
  cleanup.Push(absl::StrCat("sh -c 'umount ", fs, " || umount -l ", fs, "'"));
  read_back.assign(new_file.size(), std::byte{0});
  std::ifstream(fs + "/new", std::ios::binary)
      .read(reinterpret_cast<char*>(read_back.data()), read_back.size());
  EXPECT_EQ(read_back, new_file);
  ASSERT_EQ(cleanup.Pop().status, 0) << "umount";
  ASSERT_EQ(cleanup.Pop().status, 0) << "losetup -d";
  EXPECT_EQ(source_->Contents(), source) << "the source is never written";
}

}  // namespace
}  // namespace blkclone

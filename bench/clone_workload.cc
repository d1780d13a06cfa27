// clone_workload: drives a blkclone Clone over real files for the macro
// benchmark (bench/macro/run), which compares it with dd, qemu-img and fio on
// the same files. One workload per run; the result is one line of key=value.
//
//   clone_workload hydrate --source=src.img --dest=dst.img --metadata=meta.img
//       --backend=uring-direct --region_size=65536 --threshold=64 --batch=16
//   clone_workload randio --source=src.img --dest=dst.img --metadata=meta.img
//       --backend=uring-direct --op=randwrite --qd=32 --seconds=5
//
// hydrate: a Hydrator copies every unhydrated region, then the clone is closed
// (its last commit included). Prints bytes, seconds, mib_per_s.
// randio: keeps exactly --qd requests of --block bytes in flight at uniformly
// random aligned offsets for --seconds; with --flush_each every write is
// followed by a flush and the pair counts as one I/O (so --qd must be 1);
// with --first_touch each request goes to a region no earlier request touched,
// so on an unhydrated clone every write hydrates its region (the run ends
// early if the regions run out).
// Prints ios, seconds, iops, mean_latency_us (submission to completion) and
// hydrated_regions/regions at the end.
//
// The clone's metadata is PersistentMetadata on --metadata (a FileDevice). A
// missing file is created blank, so the clone starts unhydrated; an existing
// one is opened as it is (say, fully hydrated by an earlier `hydrate`).
//
// Backends: file (FileDevice + CopyFileRangeCopier) and, where liburing is
// built, uring and uring-direct (UringDevice buffered or O_DIRECT +
// UringCopier; --rings rings per device). The source is opened read-only.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/any_block_device.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/copy_file_range_copier.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/status.hpp"
#ifdef BLKCLONE_HAVE_URING
#include "blkclone/uring_copier.hpp"
#include "blkclone/uring_device.hpp"
#endif

ABSL_FLAG(std::string, source, "", "source file (read only)");
ABSL_FLAG(std::string, dest, "", "destination file, at least as large as the source");
ABSL_FLAG(std::string, metadata, "", "metadata file; created blank (unhydrated) when missing");
ABSL_FLAG(std::string, backend, "uring-direct", "file, uring or uring-direct");
ABSL_FLAG(uint64_t, region_size, 64 << 10, "region size in bytes");
ABSL_FLAG(uint64_t, threshold, 64, "hydrate: regions hydrating at once");
ABSL_FLAG(uint64_t, batch, 16, "hydrate: contiguous regions per copy job");
ABSL_FLAG(uint64_t, chunk, 1 << 20, "uring copier: bytes per linked read -> write");
ABSL_FLAG(int, in_flight, 32, "uring copier: chunks in flight");
ABSL_FLAG(int, copy_threads, 4, "file copier: copy_file_range threads");
ABSL_FLAG(int, rings, 1, "uring devices: rings, each with its own thread");
ABSL_FLAG(std::string, op, "randread", "randio: randread or randwrite");
ABSL_FLAG(int, qd, 1, "randio: requests kept in flight");
ABSL_FLAG(double, seconds, 5, "randio: how long to run");
ABSL_FLAG(uint32_t, block, 4096, "randio: bytes per request");
ABSL_FLAG(bool, flush_each, false, "randio: follow every write with a flush (qd 1)");
ABSL_FLAG(bool, first_touch, false, "randio: each request in a region no earlier one touched");

namespace blkclone {
namespace {

using Clock = std::chrono::steady_clock;

#ifdef BLKCLONE_HAVE_URING
constexpr char kBackends[] = "file, uring, uring-direct";
#else
constexpr char kBackends[] = "file (uring and uring-direct need liburing)";
#endif

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The devices and copier of one backend; the clone borrows them.
template <class Device, class CopierT>
struct Stack {
  std::unique_ptr<Device> source;
  std::unique_ptr<Device> dest;
  std::unique_ptr<CopierT> copier;
};

absl::StatusOr<Stack<FileDevice, CopyFileRangeCopier>> OpenFileStack() {
  Stack<FileDevice, CopyFileRangeCopier> stack;
  BLKCLONE_ASSIGN_OR_RETURN(stack.source,
                            FileDevice::Open(absl::GetFlag(FLAGS_source), {.read_only = true}));
  BLKCLONE_ASSIGN_OR_RETURN(stack.dest, FileDevice::Open(absl::GetFlag(FLAGS_dest), {}));
  stack.copier = std::make_unique<CopyFileRangeCopier>(
      *stack.source, *stack.dest,
      CopyFileRangeCopier::Options{.threads = absl::GetFlag(FLAGS_copy_threads)});
  return stack;
}

#ifdef BLKCLONE_HAVE_URING
absl::StatusOr<Stack<UringDevice, UringCopier>> OpenUringStack(bool direct) {
  Stack<UringDevice, UringCopier> stack;
  const int rings = absl::GetFlag(FLAGS_rings);
  BLKCLONE_ASSIGN_OR_RETURN(
      stack.source, UringDevice::Open(absl::GetFlag(FLAGS_source),
                                      {.read_only = true, .rings = rings, .direct = direct}));
  BLKCLONE_ASSIGN_OR_RETURN(
      stack.dest, UringDevice::Open(absl::GetFlag(FLAGS_dest), {.rings = rings, .direct = direct}));
  BLKCLONE_ASSIGN_OR_RETURN(stack.copier,
                            UringCopier::Create(*stack.source, *stack.dest,
                                                {.chunk_size = absl::GetFlag(FLAGS_chunk),
                                                 .max_in_flight = absl::GetFlag(FLAGS_in_flight)}));
  return stack;
}
#endif

// Opens the metadata file, first creating it blank when it does not exist. The
// blank file is written out (not sparse) so that commits overwrite blocks
// instead of allocating them.
absl::StatusOr<std::unique_ptr<PersistentMetadata>> OpenMetadata(const CloneGeometry& geometry) {
  const std::string path = absl::GetFlag(FLAGS_metadata);
  if (::access(path.c_str(), F_OK) != 0) {
    const uint64_t size = (PersistentMetadata::RequiredSize(geometry) + kMetadataBlockSize - 1) /
                          kMetadataBlockSize * kMetadataBlockSize;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return ErrnoStatus(errno, "create metadata", 0, size);
    const std::vector<char> zeroes(size);
    const bool written = ::write(fd, zeroes.data(), size) == static_cast<ssize_t>(size);
    const int saved_errno = errno;
    ::close(fd);
    if (!written) return ErrnoStatus(saved_errno, "write blank metadata", 0, size);
  }
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<FileDevice> device, FileDevice::Open(path, {}));
  return PersistentMetadata::Open(AnyBlockDevice(std::move(device)), geometry,
                                  {.format_if_blank = true});
}

template <class CloneT>
absl::Status Hydrate(CloneT& clone) {
  const auto start = Clock::now();
  const uint64_t before = clone.metadata().map().CountSet();
  {
    Hydrator<CloneT> hydrator(clone, {.threshold = absl::GetFlag(FLAGS_threshold),
                                      .batch_size = absl::GetFlag(FLAGS_batch),
                                      .hot_regions = false});
    while (!hydrator.WaitUntilComplete(std::chrono::milliseconds(100))) {
      const HydrationProgress progress = hydrator.progress();
      if (progress.stopped) return progress.stop_reason;
    }
    BLKCLONE_RETURN_IF_ERROR(clone.Close());  // before the hydrator goes
  }
  const double seconds = SecondsSince(start);
  const CloneGeometry& geometry = clone.geometry();
  const uint64_t bytes =
      std::min((geometry.region_count - before) * geometry.region_size, geometry.source_size);
  std::printf("bytes=%llu seconds=%.3f mib_per_s=%.1f\n", static_cast<unsigned long long>(bytes),
              seconds, static_cast<double>(bytes) / (1 << 20) / seconds);
  return absl::OkStatus();
}

// Keeps `depth` requests in flight on `device` until the deadline: each
// completion records its latency and submits the slot's next request.
template <class Device>
class RandomIo {
 public:
  struct Options {
    Op op = Op::kRead;
    uint32_t block = 4096;
    int depth = 1;
    bool flush_each = false;
    double seconds = 5;
    // Nonzero: every request goes to a region of this size that no earlier
    // request touched (a random order of the regions); stops when none is left.
    uint64_t first_touch_region = 0;
  };
  struct Result {
    uint64_t ios = 0;
    double seconds = 0;
    double mean_latency_us = 0;
  };

  RandomIo(Device& device, const Options& options)
      : device_(device),
        options_(options),
        buffers_(AlignedBuffer::Zeroed(size_t{options.block} * options.depth,
                                       std::max<size_t>(4096, device.info().memory_alignment))),
        slots_(options.depth) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].owner = this;
      slots_[i].buffer = buffers_.data() + i * options.block;
      slots_[i].random.seed(i + 1);
      for (uint32_t b = 0; b < options.block; ++b)
        slots_[i].buffer[b] = static_cast<std::byte>(slots_[i].random());
    }
    if (options.first_touch_region != 0) {
      // Whole regions only: the short last one may hold fewer blocks.
      regions_.resize(device.info().size / options.first_touch_region);
      for (uint64_t r = 0; r < regions_.size(); ++r) regions_[r] = r;
      std::shuffle(regions_.begin(), regions_.end(), std::mt19937_64(0));
    }
  }

  absl::StatusOr<Result> Run() {
    const auto start = Clock::now();
    deadline_ = start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(options_.seconds));
    {
      internal::MutexLock lock(mu_);
      active_ = static_cast<int>(slots_.size());
    }
    for (Slot& slot : slots_) {
      if (!StartSlot(slot)) StopSlot(absl::OkStatus());
    }
    internal::MutexLock lock(mu_);
    done_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; });
    if (!error_.ok()) return error_;
    const uint64_t ios = ios_.load();
    return Result{
        .ios = ios,
        .seconds = std::chrono::duration<double>(std::min(deadline_, last_stop_) - start).count(),
        .mean_latency_us = ios == 0 ? 0 : latency_ns_.load() / 1e3 / ios};
  }

 private:
  struct Slot {
    RandomIo* owner = nullptr;
    std::byte* buffer = nullptr;
    std::mt19937_64 random;
    Clock::time_point submitted;
    Request request;
  };

  // Uniform in [0, n).
  static uint64_t Below(uint64_t n, Slot& slot) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(slot.random);
  }

  // Where the slot's next request goes; nullopt when no region is left untouched.
  std::optional<uint64_t> NextOffset(Slot& slot) {
    const uint64_t block = options_.block;
    const uint64_t region = options_.first_touch_region;
    if (region == 0) return Below(device_.info().size / block, slot) * block;
    const uint64_t i = next_region_.fetch_add(1, std::memory_order_relaxed);
    if (i >= regions_.size()) return std::nullopt;
    return regions_[i] * region + Below(region / block, slot) * block;
  }

  bool StartSlot(Slot& slot) {
    const std::optional<uint64_t> offset = NextOffset(slot);
    if (!offset) return false;
    slot.request = Request::Make(options_.op, kNoFlags, *offset, options_.block, slot.buffer);
    slot.request.context = &slot;
    slot.request.on_complete = &OnComplete;
    slot.submitted = Clock::now();
    device_.Submit(slot.request);
    return true;
  }

  static void OnComplete(Request& request, absl::Status status) {
    Slot& slot = *static_cast<Slot*>(request.context);
    RandomIo& self = *slot.owner;
    if (status.ok() && request.op == Op::kWrite && self.options_.flush_each) {
      request = Request::Flush();
      request.context = &slot;
      request.on_complete = &OnComplete;
      return self.device_.Submit(request);
    }
    const auto now = Clock::now();
    if (status.ok() && now <= self.deadline_) {
      self.ios_.fetch_add(1, std::memory_order_relaxed);
      self.latency_ns_.fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - slot.submitted).count(),
          std::memory_order_relaxed);
      if (self.StartSlot(slot)) return;
    }
    self.StopSlot(std::move(status));
  }

  void StopSlot(absl::Status status) {
    const auto now = Clock::now();
    internal::MutexLock lock(mu_);
    if (error_.ok()) error_ = std::move(status);
    last_stop_ = std::max(last_stop_, now);
    if (--active_ == 0) done_cv_.SignalAll();
  }

  Device& device_;
  const Options options_;
  AlignedBuffer buffers_;
  std::vector<Slot> slots_;
  std::vector<uint64_t> regions_;  // first touch: the order regions are used in
  std::atomic<uint64_t> next_region_{0};
  Clock::time_point deadline_;  // set before the first submission
  std::atomic<uint64_t> ios_{0};
  std::atomic<uint64_t> latency_ns_{0};
  internal::Mutex mu_;
  internal::CondVar done_cv_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;  // slots not yet stopped
  Clock::time_point last_stop_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

template <class CloneT>
absl::Status RunRandomIo(CloneT& clone) {
  const std::string op = absl::GetFlag(FLAGS_op);
  if (op != "randread" && op != "randwrite")
    return absl::InvalidArgumentError(absl::StrCat("--op: randread or randwrite, not ", op));
  typename RandomIo<CloneT>::Options options{
      .op = op == "randread" ? Op::kRead : Op::kWrite,
      .block = absl::GetFlag(FLAGS_block),
      .depth = absl::GetFlag(FLAGS_qd),
      .flush_each = absl::GetFlag(FLAGS_flush_each),
      .seconds = absl::GetFlag(FLAGS_seconds),
      .first_touch_region = absl::GetFlag(FLAGS_first_touch) ? clone.geometry().region_size : 0};
  if (options.depth < 1 || options.block == 0 || options.block > clone.info().size ||
      options.seconds <= 0)
    return absl::InvalidArgumentError("--qd, --block and --seconds must be positive");
  if (options.first_touch_region % options.block != 0)
    return absl::InvalidArgumentError("--first_touch: --block must divide the region size");
  if (options.flush_each && (options.op != Op::kWrite || options.depth != 1))
    return absl::InvalidArgumentError("--flush_each needs --op=randwrite and --qd=1");
  BLKCLONE_ASSIGN_OR_RETURN(auto result, RandomIo<CloneT>(clone, options).Run());
  BLKCLONE_RETURN_IF_ERROR(clone.Close());
  std::printf(
      "ios=%llu seconds=%.3f iops=%.1f mean_latency_us=%.2f hydrated_regions=%llu regions=%llu\n",
      static_cast<unsigned long long>(result.ios), result.seconds, result.ios / result.seconds,
      result.mean_latency_us, static_cast<unsigned long long>(clone.metadata().map().CountSet()),
      static_cast<unsigned long long>(clone.geometry().region_count));
  return absl::OkStatus();
}

template <class Device, class CopierT>
absl::Status RunOn(absl::StatusOr<Stack<Device, CopierT>> opened, const std::string& command) {
  BLKCLONE_RETURN_IF_ERROR(opened.status());
  Stack<Device, CopierT>& stack = *opened;
  BLKCLONE_ASSIGN_OR_RETURN(CloneGeometry geometry,
                            MakeCloneGeometry(stack.source->info(), stack.dest->info(),
                                              absl::GetFlag(FLAGS_region_size)));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<PersistentMetadata> metadata, OpenMetadata(geometry));
  using CloneT = Clone<Device, Device, CopierT>;
  BLKCLONE_ASSIGN_OR_RETURN(
      std::unique_ptr<CloneT> clone,
      CloneT::Create(*stack.source, *stack.dest, *stack.copier, *metadata, {}));
  return command == "hydrate" ? Hydrate(*clone) : RunRandomIo(*clone);
}

absl::Status Main(const std::string& command) {
  if (command != "hydrate" && command != "randio")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown workload ", command, ": hydrate or randio"));
  if (absl::GetFlag(FLAGS_source).empty() || absl::GetFlag(FLAGS_dest).empty() ||
      absl::GetFlag(FLAGS_metadata).empty())
    return absl::InvalidArgumentError("--source, --dest and --metadata are required");
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend == "file") return RunOn(OpenFileStack(), command);
#ifdef BLKCLONE_HAVE_URING
  if (backend == "uring" || backend == "uring-direct")
    return RunOn(OpenUringStack(backend == "uring-direct"), command);
#endif
  return absl::InvalidArgumentError(
      absl::StrCat("--backend ", backend, ": this build has ", kBackends));
}

}  // namespace
}  // namespace blkclone

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "clone_workload hydrate|randio --source=F --dest=F --metadata=F [options]\n"
      "Drives a blkclone clone over files for bench/macro/run.");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  const absl::Status status = blkclone::Main(positional[1]);
  if (!status.ok()) {
    std::fprintf(stderr, "clone_workload: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

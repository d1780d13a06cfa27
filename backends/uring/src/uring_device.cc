// UringDevice: requests on rings driven by one thread each (RingWorker), with
// worker threads for what io_uring does not do here.
#include "blkclone/uring_device.hpp"

#include <linux/falloc.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/uring_loop.hpp"
#include "blkclone/status.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone {
namespace {

using RequestQueue =
    boost::intrusive::list<Request,
                           boost::intrusive::member_hook<Request, RequestHook, &Request::hook>>;

constexpr int kFile = 0;  // fixed-file index of the device in every ring
constexpr std::array<int, 4> kRingOps = {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC,
                                         IORING_OP_FALLOCATE};

bool IsTransient(int32_t result) { return result == -EAGAIN || result == -EINTR; }

absl::Status CheckOptions(const std::string& path, const UringDevice::Options& options) {
  auto invalid = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (options.rings < 1) return invalid("rings must be >= 1");
  if (options.queue_depth < 1 || options.queue_depth > 4096)
    return invalid("queue_depth must be in 1..4096");
  if (options.worker_threads < 1) return invalid("worker_threads must be >= 1");
  if (options.max_bytes_per_sqe < 512 || options.max_bytes_per_sqe > (1u << 30))
    return invalid("max_bytes_per_sqe must be in 512..1 GiB");
  return absl::OkStatus();
}

}  // namespace

// One ring and its thread. A request holds a Slot while its SQEs are in
// flight: a chain of [preflush fsync ->] operation [-> FUA fsync], linked with
// IOSQE_IO_LINK. When the chain's last CQE arrives the slot settles: retry,
// continue a partial transfer, hand the request to the workers, or complete.
// Slots and the backlog belong to the loop thread; posted_ to mu_.
class UringDevice::RingWorker final : public internal::UringLoop {
 public:
  RingWorker(UringDevice& device, internal::Ring ring, uint32_t depth)
      : UringLoop(std::move(ring)), device_(device), slots_(depth) {
    for (Slot& slot : slots_) free_.push_back(&slot);
    Start();
  }
  ~RingWorker() override { Stop(); }

  // Queues `request`; false once the ring has stopped.
  bool Post(Request& request) {
    bool wake;
    {
      internal::MutexLock lock(mu_);
      if (exited()) return false;
      posted_.push_back(request);
      wake = TakeWakeUp();
    }
    if (wake) Wake();
    return true;
  }

  uint64_t short_transfers() const { return short_transfers_.load(std::memory_order_relaxed); }
  uint64_t retries() const { return retries_.load(std::memory_order_relaxed); }

 private:
  // The low bits of an SQE's user_data: which SQE of a slot's chain it is.
  enum Role : uint64_t { kPreflushSync = 1, kOperation = 2, kFuaSync = 3, kRoleMask = 7 };

  struct alignas(8) Slot {
    Request* request = nullptr;
    uint64_t done = 0;   // bytes transferred so far
    uint32_t asked = 0;  // bytes the current read/write SQE asks for
    int pending = 0;     // CQEs of the chain still to come
    bool preflush_pending = false;
    bool chained_preflush = false;
    bool chained_sync = false;
    std::array<int32_t, 4> results = {};  // by Role
  };

  void TakePosted() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    backlog_.splice(backlog_.end(), posted_);
  }
  bool HasPosted() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !posted_.empty(); }
  bool Busy() const override { return !backlog_.empty() || free_.size() != slots_.size(); }

  void StartWork() override {
    while (!backlog_.empty() && !free_.empty()) {
      Request& request = backlog_.front();
      backlog_.pop_front();
      Slot& slot = *free_.back();
      free_.pop_back();
      slot.request = &request;
      slot.done = 0;
      slot.preflush_pending = (request.flags & kPreflush) != 0;
      Launch(slot);
    }
  }

  void OnCompletion(uint64_t user_data, int32_t result) override {
    Slot& slot = *reinterpret_cast<Slot*>(user_data & ~uint64_t{kRoleMask});
    slot.results[user_data & kRoleMask] = result;
    if (--slot.pending == 0) Settle(slot);
  }

  void Tag(io_uring_sqe* sqe, Slot& slot, Role role, unsigned flags) {
    io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | flags);
    io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(&slot) | role);
    ++slot.pending;
  }

  void PrepareFsync(Slot& slot, Role role, unsigned flags) {
    io_uring_sqe* sqe = NextSqe();
    io_uring_prep_fsync(sqe, kFile, IORING_FSYNC_DATASYNC);
    Tag(sqe, slot, role, flags);
  }

  // Queues the slot's chain for what remains of its request.
  void Launch(Slot& slot) {
    const Request& request = *slot.request;
    slot.pending = 0;
    slot.chained_preflush = slot.preflush_pending;
    slot.chained_sync = (request.flags & kFua) != 0 &&
                        (request.op == Op::kDiscard || request.op == Op::kWriteZeroes);
    ReserveSqes(1 + slot.chained_preflush + slot.chained_sync);
    if (slot.chained_preflush) PrepareFsync(slot, kPreflushSync, IOSQE_IO_LINK);
    io_uring_sqe* sqe = NextSqe();
    switch (request.op) {
      case Op::kFlush:
        io_uring_prep_fsync(sqe, kFile, IORING_FSYNC_DATASYNC);
        break;
      case Op::kRead:
      case Op::kWrite:
        slot.asked = static_cast<uint32_t>(
            std::min<uint64_t>(request.length - slot.done, device_.max_bytes_per_sqe_));
        if (request.op == Op::kRead) {
          io_uring_prep_read(sqe, kFile, request.data + slot.done, slot.asked,
                             request.offset + slot.done);
        } else {
          io_uring_prep_write(sqe, kFile, request.data + slot.done, slot.asked,
                              request.offset + slot.done);
          if (request.flags & kFua) sqe->rw_flags = RWF_DSYNC;
        }
        break;
      case Op::kDiscard:
        io_uring_prep_fallocate(sqe, kFile, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(request.offset),
                                static_cast<off_t>(request.length));
        break;
      case Op::kWriteZeroes:
        io_uring_prep_fallocate(sqe, kFile, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                static_cast<off_t>(request.offset),
                                static_cast<off_t>(request.length));
        break;
      case Op::kBlockStatus:
        break;  // never reaches a ring (RingCanDo)
    }
    Tag(sqe, slot, kOperation, slot.chained_sync ? IOSQE_IO_LINK : 0);
    if (slot.chained_sync) PrepareFsync(slot, kFuaSync, 0);
  }

  // The chain has completed (a failed link cancels what follows it).
  void Settle(Slot& slot) {
    const Request& request = *slot.request;
    if (slot.chained_preflush) {
      const int32_t result = slot.results[kPreflushSync];
      if (IsTransient(result)) return Retry(slot);
      if (result < 0) return Finish(slot, ErrnoStatus(-result, "fsync (preflush)"));
      slot.preflush_pending = false;
    }
    const int32_t result = slot.results[kOperation];
    if (IsTransient(result)) return Retry(slot);
    if (result < 0) {
      // The workers' fallocate falls back to writing zeroes.
      const bool fallocate = request.op == Op::kDiscard || request.op == Op::kWriteZeroes;
      if (fallocate && (result == -EOPNOTSUPP || result == -EINVAL)) return HandOff(slot);
      return Finish(slot, ErrnoStatus(-result, OpName(request.op), request.offset + slot.done,
                                      request.length - slot.done));
    }
    if (request.op == Op::kRead || request.op == Op::kWrite) {
      if (result == 0 && slot.asked > 0) return Finish(slot, NoProgress(request, slot.done));
      if (static_cast<uint32_t>(result) < slot.asked)
        short_transfers_.fetch_add(1, std::memory_order_relaxed);
      slot.done += static_cast<uint64_t>(result);
      if (slot.done < request.length) return Launch(slot);
    }
    if (slot.chained_sync && slot.results[kFuaSync] < 0)
      return Finish(slot, ErrnoStatus(-slot.results[kFuaSync], "fsync (FUA)"));
    Finish(slot, absl::OkStatus());
  }

  absl::Status NoProgress(const Request& request, uint64_t done) const {
    const uint64_t at = request.offset + done;
    if (request.op == Op::kRead) {
      // The file shrank under us: report it instead of returning stale bytes.
      return absl::OutOfRangeError(absl::StrCat(device_.path(), ": unexpected end of file at ",
                                                "offset ", at, " (size changed while open?)"));
    }
    return absl::InternalError(
        absl::StrCat(device_.path(), ": write at offset ", at, " made no progress"));
  }

  void Retry(Slot& slot) {
    retries_.fetch_add(1, std::memory_order_relaxed);
    Launch(slot);
  }

  void HandOff(Slot& slot) { device_.workers_.Push(Release(slot)); }

  void Finish(Slot& slot, absl::Status status) { Release(slot).Complete(std::move(status)); }

  Request& Release(Slot& slot) {
    Request& request = *slot.request;
    slot.request = nullptr;
    free_.push_back(&slot);
    return request;
  }

  UringDevice& device_;
  RequestQueue posted_ ABSL_GUARDED_BY(mu_);
  RequestQueue backlog_;
  std::vector<Slot> slots_;
  std::vector<Slot*> free_;
  std::atomic<uint64_t> short_transfers_{0};
  std::atomic<uint64_t> retries_{0};
};

absl::StatusOr<std::unique_ptr<UringDevice>> UringDevice::Open(const std::string& path,
                                                               const Options& options) {
  BLKCLONE_RETURN_IF_ERROR(CheckOptions(path, options));
  BLKCLONE_ASSIGN_OR_RETURN(internal::FdFile file,
                            internal::OpenFdFile(path, options.read_only, options.direct));
  BLKCLONE_ASSIGN_OR_RETURN(
      DeviceInfo info,
      internal::DescribeFdFile(file, options.logical_block_size, options.read_only));
  info.caps.fua = FuaSupport::kNative;  // RWF_DSYNC: the kernel makes the write durable
  std::optional<DirectIoAlignment> alignment;
  uint32_t sqe_granularity = info.logical_block_size;
  if (options.direct) {
    BLKCLONE_ASSIGN_OR_RETURN(alignment, internal::ProbeDirectIoAlignment(file, options.direct_io));
    BLKCLONE_RETURN_IF_ERROR(
        internal::AdvertiseDirectIo(file, *alignment, options.direct_io, info));
    // Continuations must stay aligned for O_DIRECT, in the file and in memory.
    sqe_granularity = std::max({sqe_granularity, alignment->offset, alignment->memory});
  }
  if (options.max_bytes_per_sqe % sqe_granularity != 0)
    return absl::InvalidArgumentError(absl::StrCat(path, ": max_bytes_per_sqe ",
                                                   options.max_bytes_per_sqe,
                                                   " is not a multiple of ", sqe_granularity));
  const int fd = file.fd.get();
  std::unique_ptr<UringDevice> device(new UringDevice(std::move(file), info, alignment, options));
  for (int i = 0; i < options.rings; ++i) {
    // Three SQEs per request at most (preflush, operation, FUA fsync) and the
    // armed eventfd read: the completion queue never overflows, and a whole
    // chain always fits in the submission queue.
    BLKCLONE_ASSIGN_OR_RETURN(
        internal::Ring ring,
        internal::Ring::Create(std::max(options.queue_depth, 4u), 4 * options.queue_depth + 4, {fd},
                               kRingOps, path));
    device->rings_.push_back(
        std::make_unique<RingWorker>(*device, std::move(ring), options.queue_depth));
  }
  return device;
}

UringDevice::UringDevice(internal::FdFile file, DeviceInfo info,
                         std::optional<DirectIoAlignment> alignment, const Options& options)
    : info_(info),
      max_bytes_per_sqe_(options.max_bytes_per_sqe),
      io_(std::move(file), info.logical_block_size, alignment, /*dsync_fua=*/true),
      workers_(options.worker_threads,
               [this](Request& request) { request.Complete(io_.Perform(request)); }) {}

UringDevice::~UringDevice() = default;

bool UringDevice::RingCanDo(const Request& request) const {
  switch (request.op) {
    case Op::kRead:
    case Op::kWrite:
      return !io_.NeedsBounce(request);
    case Op::kDiscard:
    case Op::kWriteZeroes:
      // fallocate refuses an empty range; block devices get BLKDISCARD/BLKZEROOUT.
      return !io_.is_block_device() && request.length > 0;
    case Op::kFlush:
      return true;
    case Op::kBlockStatus:
      return false;  // lseek(SEEK_DATA/SEEK_HOLE) on a worker
  }
  return true;
}

void UringDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok()) {
    request.Complete(std::move(status));
    return;
  }
  if (!RingCanDo(request)) {
    workers_.Push(request);
    return;
  }
  RingWorker& ring = *rings_[next_ring_.fetch_add(1, std::memory_order_relaxed) % rings_.size()];
  if (!ring.Post(request))
    request.Complete(absl::FailedPreconditionError(absl::StrCat(path(), ": device is closing")));
}

UringDevice::Stats UringDevice::stats() const {
  Stats stats;
  for (const auto& ring : rings_) {
    stats.batches += ring->batches();
    stats.sqes += ring->sqes();
    stats.short_transfers += ring->short_transfers();
    stats.retries += ring->retries();
  }
  stats.bounces = io_.bounces();
  return stats;
}

}  // namespace blkclone

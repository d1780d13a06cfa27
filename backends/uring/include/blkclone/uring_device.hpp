// UringDevice: a BlockDevice over a regular file or block device node that
// performs its I/O through io_uring (liburing).
//
// Each of `rings` rings has one thread that collects the requests submitted
// since its last turn, prepares their SQEs and submits them in one batch, then
// reaps completions. The file is a registered (fixed) file of every ring. A
// read or write that the kernel completes short is continued from where it
// stopped, and -EAGAIN/-EINTR are retried, so callers never see partial I/O.
//   - Flush: IORING_OP_FSYNC with IORING_FSYNC_DATASYNC. kPreflush: that fsync
//     linked (IOSQE_IO_LINK) in front of the request.
//   - FUA: a write with RWF_DSYNC; a discard or write-zeroes followed by a
//     linked fsync.
//   - Discard and write-zeroes on a regular file: IORING_OP_FALLOCATE
//     (PUNCH_HOLE / ZERO_RANGE, KEEP_SIZE). On a block device, or where the
//     file system refuses, they run on worker threads as in FileDevice
//     (BLKDISCARD, BLKZEROOUT, writing zeroes).
//   - `direct`: O_DIRECT with DirectDevice's alignment rules
//     (direct_io_options.hpp). Aligned reads and writes go through the rings;
//     those that need a bounce buffer run on the worker threads.
// The device does not register buffers: callers' buffers differ from request
// to request, and pinning each would cost more than it saves (UringCopier,
// which owns its buffers, does register them).
//
// Destroying the device performs every request already submitted first.
// Where the kernel refuses io_uring, Open says so with kUnimplemented (ENOSYS)
// or kPermissionDenied (EPERM).
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto dest, blkclone::UringDevice::Open("dest.img", {.rings = 2}));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*dest, 0, data, blkclone::kFua));
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/direct_io_options.hpp"
#include "blkclone/internal/fd_io.hpp"
#include "blkclone/internal/worker_pool.hpp"

namespace blkclone {

class UringDevice {
 public:
  struct Options {
    bool read_only = false;
    // For regular files; block devices report their own.
    uint32_t logical_block_size = 512;
    // Rings, each with its own thread; requests are spread round-robin.
    int rings = 1;
    // Requests in flight per ring (1..4096); more wait in the ring's queue.
    uint32_t queue_depth = 64;
    // Most bytes one SQE reads or writes; larger requests continue in further
    // SQEs as after a short transfer. A multiple of the block size (and of the
    // direct-I/O alignment), at most 1 GiB: the kernel moves < 2 GiB per call.
    uint32_t max_bytes_per_sqe = 1 << 30;
    // Threads for what the rings leave aside (see the top of this file).
    int worker_threads = 2;
    // O_DIRECT, with `direct_io` deciding how alignment is handled.
    bool direct = false;
    DirectIoOptions direct_io = {};
  };

  struct Stats {
    uint64_t batches = 0;          // io_uring_enter calls that submitted SQEs
    uint64_t sqes = 0;             // SQEs submitted
    uint64_t short_transfers = 0;  // reads and writes the kernel completed short
    uint64_t retries = 0;          // SQEs resubmitted after -EAGAIN or -EINTR
    uint64_t bounces = 0;          // requests that went through a bounce buffer
  };

  // Opens `path` and sets up the rings. Errors as FileDevice::Open (and
  // DirectDevice::Open with `direct`), kInvalidArgument for bad options, and
  // kUnimplemented / kPermissionDenied when the kernel refuses io_uring.
  static absl::StatusOr<std::unique_ptr<UringDevice>> Open(const std::string& path,
                                                           const Options& options);
  // Performs every request already submitted, then closes the rings and file.
  ~UringDevice();
  UringDevice(const UringDevice&) = delete;
  UringDevice& operator=(const UringDevice&) = delete;

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;
  const std::string& path() const { return io_.path(); }
  // What O_DIRECT requires of the file; nullopt unless opened `direct`.
  std::optional<DirectIoAlignment> direct_alignment() const { return io_.direct_alignment(); }
  // Counters since Open, summed over the rings.
  Stats stats() const;

 private:
  // Reads and writes the file through its own ring.
  friend class UringCopier;
  class RingWorker;

  // Without rings: Open adds them once each has been set up.
  UringDevice(internal::FdFile file, DeviceInfo info, std::optional<DirectIoAlignment> alignment,
              const Options& options);
  // False for what the rings leave to the workers.
  bool RingCanDo(const Request& request) const;
  int fd() const { return io_.fd(); }

  const DeviceInfo info_;
  const uint32_t max_bytes_per_sqe_;
  internal::FdIo io_;
  // Destroyed in reverse order: the rings finish (handing fallbacks to the
  // workers), then the workers, then io_ closes the file.
  internal::WorkerPool<Request, &Request::hook> workers_;
  std::vector<std::unique_ptr<RingWorker>> rings_;
  std::atomic<size_t> next_ring_{0};
};

static_assert(BlockDevice<UringDevice>);

}  // namespace blkclone

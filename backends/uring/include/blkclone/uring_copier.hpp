// UringCopier: a Copier between two UringDevices that drives its own ring.
// A job is cut into chunks; each chunk owns one of `max_in_flight` buffers
// and is a read from the source linked (IOSQE_IO_LINK) to a write of the same
// buffer to the destination, so the kernel starts the write as soon as the
// read lands, with no trip through user space. Many chunks, of one job or
// several, are in flight at once; jobs beyond that wait in FIFO order. The
// buffers are registered with the ring (READ_FIXED / WRITE_FIXED) unless
// registration fails (a locked-memory limit, say), in which case plain
// READ / WRITE use them. Short reads and writes continue where they stopped;
// -EAGAIN and -EINTR are retried.
//
// Devices opened `direct` need chunks aligned for O_DIRECT; the rare job that
// is not (the short last region of a device, say) goes through a
// BufferedCopier over the devices instead, which bounces as they do.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto copier, blkclone::UringCopier::Create(*source, *dest));
//   auto clone = Clone<UringDevice, UringDevice, UringCopier>::Create(
//       *source, *dest, *copier, metadata, {});
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/copier.hpp"
#include "blkclone/uring_device.hpp"

namespace blkclone {

struct UringCopierOptions {
  uint64_t chunk_size = 1 << 20;  // bytes per linked read -> write (4 KiB..64 MiB)
  int max_in_flight = 8;          // chunks, and buffers, in flight at once
  bool register_buffers = true;   // pin the buffers with io_uring_register_buffers
  // A chunk read as all zeroes is not written: the destination range is
  // zeroed thinly instead (BufferedCopierOptions::detect_zeroes).
  bool detect_zeroes = true;
};

class UringCopier {
 public:
  struct Stats {
    uint64_t chunks = 0;           // chunks started
    uint64_t max_in_flight = 0;    // most chunks in flight at one time
    uint64_t short_transfers = 0;  // reads and writes the kernel completed short
    uint64_t retries = 0;          // SQEs resubmitted after -EAGAIN or -EINTR
    uint64_t fallback_jobs = 0;    // jobs sent to the BufferedCopier (unaligned for O_DIRECT)
    uint64_t zeroed_chunks = 0;    // chunks read as all zeroes and zeroed, not written
    bool registered_buffers = false;
  };

  // A copier from `source` to `dest`, which must outlive it. kInvalidArgument
  // for bad options, kFailedPrecondition for a read-only destination, and
  // kUnimplemented / kPermissionDenied when the kernel refuses io_uring.
  static absl::StatusOr<std::unique_ptr<UringCopier>> Create(
      UringDevice& source, UringDevice& dest, const UringCopierOptions& options = {});
  // Completes every job already started or queued.
  ~UringCopier();
  UringCopier(const UringCopier&) = delete;
  UringCopier& operator=(const UringCopier&) = delete;

  // Copier: starts or queues `job`; a job beyond either device's end fails
  // with kOutOfRange.
  void Copy(CopyJob& job) noexcept;
  Stats stats() const;

 private:
  class Engine;

  UringCopier(UringDevice& source, UringDevice& dest, uint32_t alignment,
              const UringCopierOptions& options);

  const uint64_t limit_;      // the smaller device size
  const uint32_t alignment_;  // offsets and lengths the ring can copy as they are
  std::atomic<uint64_t> fallback_jobs_{0};
  BufferedCopier<UringDevice, UringDevice> fallback_;
  // Declared last: destroyed first, it drains its jobs before fallback_ does.
  std::unique_ptr<Engine> engine_;
};

static_assert(Copier<UringCopier>);

}  // namespace blkclone

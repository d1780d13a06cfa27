// CopyFileRangeCopier: a Copier between two FileDevices that uses
// copy_file_range(2), so the data need not pass through user space (and file
// systems that can share extents, such as XFS and Btrfs, may not copy it at
// all). Where the kernel refuses the pair (EXDEV across file systems, EINVAL
// for block devices, EOPNOTSUPP, ENOSYS), it falls back cleanly to buffered
// copies, for that job and every later one.
//
//   blkclone::CopyFileRangeCopier copier(*source, *dest, {.threads = 4});
//   auto clone = Clone<FileDevice, FileDevice, CopyFileRangeCopier>::Create(
//       *source, *dest, copier, *metadata, {});
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/copier.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/internal/worker_pool.hpp"

namespace blkclone {

class CopyFileRangeCopier {
 public:
  struct Options {
    int threads = 4;  // jobs copied at once by the kernel
    BufferedCopierOptions fallback = {};
    // Called once, on a worker thread, with the kernel's refusal when the
    // copier falls back to buffers; may be null.
    std::function<void(const absl::Status& refusal)> on_fallback = nullptr;
  };

  CopyFileRangeCopier(FileDevice& source, FileDevice& dest, const Options& options);

  void Copy(CopyJob& job) noexcept;

  // Jobs that went through the buffered fallback.
  uint64_t fallback_jobs() const { return fallback_jobs_.load(std::memory_order_relaxed); }

 private:
  // Copies `job` in the kernel; the errno by which the kernel refused before
  // copying anything, else 0.
  int CopyInKernel(CopyJob& job);
  void Run(CopyJob& job);

  FileDevice& source_;
  FileDevice& dest_;
  const std::function<void(const absl::Status&)> on_fallback_;
  std::atomic<bool> kernel_refuses_{false};
  std::atomic<uint64_t> fallback_jobs_{0};
  BufferedCopier<FileDevice, FileDevice> fallback_;
  // Last member: destroyed first, finishing queued jobs while the rest exists.
  internal::WorkerPool<CopyJob, &CopyJob::hook> workers_;
};

static_assert(Copier<CopyFileRangeCopier>);

}  // namespace blkclone

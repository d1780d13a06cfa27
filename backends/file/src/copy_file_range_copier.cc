// CopyFileRangeCopier: copy_file_range on worker threads, buffered fallback.
#include "blkclone/copy_file_range_copier.hpp"

#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone {
namespace {

// Errors by which the kernel says it cannot copy between these two files.
bool IsRefusal(int error_number) {
  return error_number == EXDEV || error_number == EINVAL || error_number == EOPNOTSUPP ||
         error_number == ENOSYS || error_number == EBADF;
}

}  // namespace

CopyFileRangeCopier::CopyFileRangeCopier(FileDevice& source, FileDevice& dest,
                                         const Options& options)
    : source_(source),
      dest_(dest),
      on_fallback_(options.on_fallback),
      fallback_(source, dest, options.fallback),
      workers_(options.threads, [this](CopyJob& job) { Run(job); }) {}

void CopyFileRangeCopier::Copy(CopyJob& job) noexcept {
  if (kernel_refuses_.load(std::memory_order_relaxed)) {
    fallback_jobs_.fetch_add(1, std::memory_order_relaxed);
    return fallback_.Copy(job);
  }
  workers_.Push(job);
}

void CopyFileRangeCopier::Run(CopyJob& job) {
  const int refusal = CopyInKernel(job);
  if (refusal == 0) return;
  if (!kernel_refuses_.exchange(true, std::memory_order_relaxed) && on_fallback_)
    on_fallback_(ErrnoStatus(refusal, "copy_file_range", job.offset, job.length));
  fallback_jobs_.fetch_add(1, std::memory_order_relaxed);
  fallback_.Copy(job);
}

int CopyFileRangeCopier::CopyInKernel(CopyJob& job) {
  loff_t in = static_cast<loff_t>(job.offset), out = in;
  uint64_t done = 0;
  while (done < job.length) {
    const ssize_t n = ::copy_file_range(source_.fd(), &in, dest_.fd(), &out, job.length - done, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (done == 0 && IsRefusal(errno)) return errno;
      job.Complete(ErrnoStatus(errno, "copy_file_range", job.offset + done, job.length - done));
      return 0;
    }
    if (n == 0) {
      job.Complete(absl::OutOfRangeError(absl::StrCat(
          source_.path(), ": unexpected end of file at offset ", job.offset + done)));
      return 0;
    }
    done += static_cast<uint64_t>(n);
  }
  job.Complete(absl::OkStatus());
  return 0;
}

}  // namespace blkclone

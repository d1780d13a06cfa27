// FdIo: performs requests synchronously on an open file or block device. It
// is what the worker threads of FileDevice and DirectDevice run, and what
// UringDevice falls back to for the operations its rings do not do.
//
//   FdIo io(std::move(file), 512, /*direct=*/std::nullopt, /*dsync_fua=*/false);
//   request.Complete(io.Perform(request));  // on a thread that may block
#pragma once

#include <sys/uio.h>  // RWF_DSYNC

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "blkclone/device_info.hpp"
#include "blkclone/direct_io_options.hpp"
#include "blkclone/internal/direct_io.hpp"
#include "blkclone/internal/fd_file.hpp"
#include "blkclone/request.hpp"

namespace blkclone::internal {

// Whether this build can ask the kernel for a durable write in one call.
#ifdef RWF_DSYNC
inline constexpr bool kHasDsyncWrites = true;
#else
inline constexpr bool kHasDsyncWrites = false;
#endif

// Thread-safe: any number of threads may Perform at once.
class FdIo {
 public:
  // `block_size`: the device's logical block size, the unit of kBlockStatus
  // answers. `direct`: `file` was opened with O_DIRECT and needs this
  // alignment; reads and writes that break it are bounced. `dsync_fua`: a FUA write is one
  // pwritev2(RWF_DSYNC) (where the build has it) instead of write + fdatasync.
  FdIo(FdFile file, uint32_t block_size, std::optional<DirectIoAlignment> direct, bool dsync_fua);
  FdIo(const FdIo&) = delete;
  FdIo& operator=(const FdIo&) = delete;

  int fd() const { return file_.fd.get(); }
  const std::string& path() const { return file_.path; }
  bool is_block_device() const { return file_.is_block_device; }
  // The O_DIRECT alignment, or nullopt for a buffered descriptor.
  std::optional<DirectIoAlignment> direct_alignment() const;

  // Performs a request that passed ValidateRequest: the preflush, the
  // operation (looping over partial transfers), then the FUA flush.
  [[nodiscard]] absl::Status Perform(const Request& request);
  // True if a read or write would go through a bounce buffer.
  bool NeedsBounce(const Request& request) const;
  // Requests that went through a bounce buffer so far.
  uint64_t bounces() const;

 private:
  absl::Status Transfer(const Request& request, int rw_flags);
  absl::Status Sync();
  absl::Status Discard(uint64_t offset, uint64_t length);
  absl::Status WriteZeroes(uint64_t offset, uint64_t length);

  const FdFile file_;
  const uint32_t block_size_;
  std::optional<DirectTransfer> direct_;
  const bool dsync_fua_;
};

}  // namespace blkclone::internal

// DirectDevice: a BlockDevice over a regular file or block device node opened
// with O_DIRECT, so that data bypasses the page cache. Worker threads run
// pread/pwritev2; a FUA write is one pwritev2(RWF_DSYNC), a flush fdatasync;
// discard and write-zeroes behave as in FileDevice.
//
// Alignment: O_DIRECT needs offsets, lengths and buffers aligned to what the
// file system or device reports (alignment(); see direct_io_options.hpp for
// how it is found). By default info() keeps the logical granularity (512 for
// files, the sector size for block devices) with memory alignment 1: aligned
// requests go straight through, others through bounce buffers, counted by
// bounces(). With `direct_io.strict_alignment` info() reports the direct-I/O
// alignment instead and such requests are rejected.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto dest, blkclone::DirectDevice::Open("dest.img", {}));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*dest, 0, page_aligned_data, blkclone::kFua));
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/direct_io_options.hpp"
#include "blkclone/internal/fd_io.hpp"
#include "blkclone/internal/worker_pool.hpp"

namespace blkclone {

class DirectDevice {
 public:
  struct Options {
    bool read_only = false;
    // For regular files; block devices report their own.
    uint32_t logical_block_size = 512;
    int worker_threads = 4;
    DirectIoOptions direct_io = {};
  };

  // Opens `path` with O_DIRECT. Errors as FileDevice::Open, plus kUnimplemented
  // when the file system refuses O_DIRECT, and kInvalidArgument for a size that
  // is not a multiple of the direct-I/O alignment.
  static absl::StatusOr<std::unique_ptr<DirectDevice>> Open(const std::string& path,
                                                            const Options& options);
  // Completes every request already submitted, then closes the file.
  ~DirectDevice() = default;
  DirectDevice(const DirectDevice&) = delete;
  DirectDevice& operator=(const DirectDevice&) = delete;

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;
  const std::string& path() const { return io_.path(); }
  // What O_DIRECT requires of this file (info() shows it only in strict mode).
  const DirectIoAlignment& alignment() const { return alignment_; }
  // Requests that went through a bounce buffer so far.
  uint64_t bounces() const { return io_.bounces(); }

 private:
  DirectDevice(internal::FdFile file, DeviceInfo info, DirectIoAlignment alignment, int threads);

  const DeviceInfo info_;
  const DirectIoAlignment alignment_;
  internal::FdIo io_;
  // Declared after io_: destroyed first, it drains its queue while io_ is open.
  internal::WorkerPool<Request, &Request::hook> workers_;
};

static_assert(BlockDevice<DirectDevice>);

}  // namespace blkclone

// FileDevice: a BlockDevice over a regular file or a block device node, using
// pread/pwrite/fdatasync on a small pool of worker threads.
//
// Discard punches holes (regular files) or issues BLKDISCARD (block devices);
// write-zeroes uses FALLOC_FL_ZERO_RANGE / BLKZEROOUT and falls back to writing
// zeroes where the file system refuses. FUA is emulated with fdatasync.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto dest, blkclone::FileDevice::Open("dest.img", {}));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*dest, 0, data, blkclone::kFua));
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/fd_io.hpp"
#include "blkclone/internal/worker_pool.hpp"

namespace blkclone {

class FileDevice {
 public:
  struct Options {
    bool read_only = false;
    // For regular files; block devices report their own.
    uint32_t logical_block_size = 512;
    int worker_threads = 4;
  };

  // Opens `path`. Errors: kNotFound / kPermissionDenied from open, and
  // kInvalidArgument for a file whose size is not a multiple of the block size,
  // a bad block size, or something that is neither a file nor a block device.
  static absl::StatusOr<std::unique_ptr<FileDevice>> Open(const std::string& path,
                                                          const Options& options);
  // Completes every submitted request, then closes the file.
  ~FileDevice() = default;
  FileDevice(const FileDevice&) = delete;
  FileDevice& operator=(const FileDevice&) = delete;

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;
  const std::string& path() const { return io_.path(); }
  // The open file, for copiers that work on descriptors (copy_file_range).
  int fd() const { return io_.fd(); }

 private:
  FileDevice(internal::FdFile file, DeviceInfo info, int threads);

  const DeviceInfo info_;
  internal::FdIo io_;
  // Declared after io_: destroyed first, it drains its queue while io_ is open.
  internal::WorkerPool<Request, &Request::hook> workers_;
};

static_assert(BlockDevice<FileDevice>);

}  // namespace blkclone

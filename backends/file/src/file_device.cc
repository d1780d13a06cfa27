// FileDevice: worker threads running FdIo's pread/pwrite/fdatasync/fallocate.
#include "blkclone/file_device.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone {

absl::StatusOr<std::unique_ptr<FileDevice>> FileDevice::Open(const std::string& path,
                                                             const Options& options) {
  if (options.worker_threads < 1)
    return absl::InvalidArgumentError(absl::StrCat(path, ": worker_threads must be >= 1"));
  BLKCLONE_ASSIGN_OR_RETURN(internal::FdFile file,
                            internal::OpenFdFile(path, options.read_only, /*direct=*/false));
  BLKCLONE_ASSIGN_OR_RETURN(
      DeviceInfo info,
      internal::DescribeFdFile(file, options.logical_block_size, options.read_only));
  return std::unique_ptr<FileDevice>(new FileDevice(std::move(file), info, options.worker_threads));
}

FileDevice::FileDevice(internal::FdFile file, DeviceInfo info, int threads)
    : info_(info),
      io_(std::move(file), info.logical_block_size, std::nullopt, /*dsync_fua=*/false),
      workers_(threads, [this](Request& request) { request.Complete(io_.Perform(request)); }) {}

void FileDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok()) {
    request.Complete(std::move(status));
    return;
  }
  workers_.Push(request);
}

}  // namespace blkclone

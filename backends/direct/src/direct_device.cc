// DirectDevice: FdIo over an O_DIRECT descriptor on worker threads.
#include "blkclone/direct_device.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone {

absl::StatusOr<std::unique_ptr<DirectDevice>> DirectDevice::Open(const std::string& path,
                                                                 const Options& options) {
  if (options.worker_threads < 1)
    return absl::InvalidArgumentError(absl::StrCat(path, ": worker_threads must be >= 1"));
  BLKCLONE_ASSIGN_OR_RETURN(internal::FdFile file,
                            internal::OpenFdFile(path, options.read_only, /*direct=*/true));
  BLKCLONE_ASSIGN_OR_RETURN(
      DeviceInfo info,
      internal::DescribeFdFile(file, options.logical_block_size, options.read_only));
  BLKCLONE_ASSIGN_OR_RETURN(DirectIoAlignment alignment,
                            internal::ProbeDirectIoAlignment(file, options.direct_io));
  BLKCLONE_RETURN_IF_ERROR(internal::AdvertiseDirectIo(file, alignment, options.direct_io, info));
  if (internal::kHasDsyncWrites) info.caps.fua = FuaSupport::kNative;
  return std::unique_ptr<DirectDevice>(
      new DirectDevice(std::move(file), info, alignment, options.worker_threads));
}

DirectDevice::DirectDevice(internal::FdFile file, DeviceInfo info, DirectIoAlignment alignment,
                           int threads)
    : info_(info),
      alignment_(alignment),
      io_(std::move(file), info.logical_block_size, alignment, /*dsync_fua=*/true),
      workers_(threads, [this](Request& request) { request.Complete(io_.Perform(request)); }) {}

void DirectDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok()) {
    request.Complete(std::move(status));
    return;
  }
  workers_.Push(request);
}

}  // namespace blkclone

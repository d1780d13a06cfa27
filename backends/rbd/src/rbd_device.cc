// RbdDevice: option checks, the DeviceInfo of an image, Submit.
#include "blkclone/rbd_device.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "rbd_image.hpp"
#include "rbd_pipeline.hpp"

namespace blkclone {
namespace {

constexpr uint32_t kSectorSize = 512;

absl::Status ValidateOptions(const RbdImageSpec& spec, const RbdOptions& options) {
  const auto invalid = [&spec](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("RBD image ", spec.ToString(), ": ", why));
  };
  if (options.writable && !spec.snapshot.empty())
    return invalid("a snapshot is read-only, and writable was asked for");
  if (options.max_in_flight < 1) return invalid("max_in_flight must be >= 1");
  if (options.connect_timeout.count() < 1) return invalid("connect_timeout must be positive");
  if (options.op_timeout.count() < 0) return invalid("op_timeout must not be negative");
  if (options.client_id.empty()) return invalid("client_id must not be empty");
  return absl::OkStatus();
}

DeviceInfo MakeDeviceInfo(uint64_t size, const RbdOptions& options) {
  return DeviceInfo{
      .size = size,
      .logical_block_size = kSectorSize,
      .memory_alignment = 1,
      .max_transfer = 0,  // librbd splits by object itself
      .caps = {.discard = options.writable,
               .discard_zeroes_data = false,
               .write_zeroes = options.writable,
               .read_only = !options.writable,
               .block_status = true,
               .volatile_write_cache = options.cache,
               .fua = options.cache ? FuaSupport::kEmulated : FuaSupport::kNative}};
}

}  // namespace

absl::StatusOr<std::unique_ptr<RbdDevice>> RbdDevice::Open(const RbdImageSpec& spec,
                                                           const RbdOptions& options) {
  BLKCLONE_RETURN_IF_ERROR(ValidateOptions(spec, options));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<internal::RbdImage> image,
                            internal::RbdImage::Open(spec, options));
  if (image->size() % kSectorSize != 0)
    return absl::InvalidArgumentError(absl::StrCat("RBD image ", spec.ToString(), ": its size ",
                                                   image->size(), " is not a multiple of ",
                                                   kSectorSize));
  const DeviceInfo info = MakeDeviceInfo(image->size(), options);
  auto pipeline = std::make_unique<internal::RbdPipeline>(
      image->handle(), absl::StrCat("RBD image ", spec.ToString()), options.cache, kSectorSize,
      options.max_in_flight);
  return std::unique_ptr<RbdDevice>(
      new RbdDevice(spec, info, std::move(image), std::move(pipeline)));
}

RbdDevice::RbdDevice(RbdImageSpec spec, const DeviceInfo& info,
                     std::unique_ptr<internal::RbdImage> image,
                     std::unique_ptr<internal::RbdPipeline> pipeline)
    : spec_(std::move(spec)),
      info_(info),
      image_(std::move(image)),
      pipeline_(std::move(pipeline)) {}

RbdDevice::~RbdDevice() = default;

void RbdDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok())
    return request.Complete(std::move(status));
  pipeline_->Submit(request);
}

}  // namespace blkclone

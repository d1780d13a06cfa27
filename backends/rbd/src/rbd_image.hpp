// RbdImage: the cluster connection, pool context and open image behind an
// RbdDevice, closed in the reverse order by the destructor.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "blkclone/rbd_device.hpp"

namespace blkclone::internal {

class RbdImage {
 public:
  // Errors as RbdDevice::Open describes them.
  static absl::StatusOr<std::unique_ptr<RbdImage>> Open(const RbdImageSpec& spec,
                                                        const RbdOptions& options);
  ~RbdImage();
  RbdImage(const RbdImage&) = delete;
  RbdImage& operator=(const RbdImage&) = delete;

  rbd_image_t handle() const { return image_; }
  uint64_t size() const { return size_; }

 private:
  RbdImage() = default;

  rados_t cluster_ = nullptr;
  rados_ioctx_t pool_ = nullptr;
  rbd_image_t image_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace blkclone::internal

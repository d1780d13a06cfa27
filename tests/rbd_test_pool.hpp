// RbdTestPool: images in the pool "rbd" of the cluster that $CEPH_CONF names
// (tests/ceph/with_cluster.sh starts one), made and removed through librbd for
// tests: fresh images, content written directly, snapshots, clones.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "blkclone/rbd_image_spec.hpp"
#include "blkclone/status.hpp"

namespace blkclone::testing {

// How an image is laid out: objects of 2^order bytes (0: librbd's 4 MiB), and
// its features (Ceph's defaults include object-map and fast-diff).
struct RbdImageLayout {
  int order = 0;
  uint64_t features = RBD_FEATURES_DEFAULT;
};

class RbdTestPool {
 public:
  static constexpr const char* kPool = "rbd";

  // kFailedPrecondition without $CEPH_CONF; else connects.
  static absl::StatusOr<std::unique_ptr<RbdTestPool>> Connect() {
    const char* conf = std::getenv("CEPH_CONF");
    if (conf == nullptr || *conf == '\0')
      return absl::FailedPreconditionError(
          "CEPH_CONF is not set: run under tests/ceph/with_cluster.sh");
    std::unique_ptr<RbdTestPool> pool(new RbdTestPool(conf));
    if (int r = rados_create(&pool->cluster_, nullptr); r < 0) return ErrnoStatus(-r, "rados_create");
    if (int r = rados_conf_read_file(pool->cluster_, conf); r < 0)
      return ErrnoStatus(-r, "rados_conf_read_file");
    if (int r = rados_connect(pool->cluster_); r < 0) return ErrnoStatus(-r, "rados_connect");
    if (int r = rados_ioctx_create(pool->cluster_, kPool, &pool->ioctx_); r < 0)
      return ErrnoStatus(-r, "rados_ioctx_create");
    return pool;
  }
  ~RbdTestPool() {
    if (ioctx_ != nullptr) rados_ioctx_destroy(ioctx_);
    if (cluster_ != nullptr) rados_shutdown(cluster_);
  }

  const std::string& conf() const { return conf_; }

  // A new, zero-filled image with a name no other test uses.
  absl::StatusOr<RbdImageSpec> CreateImage(uint64_t size, RbdImageLayout layout = {}) {
    const std::string name = NewName();
    if (int r = rbd_create2(ioctx_, name.c_str(), size, layout.features, &layout.order); r < 0)
      return ErrnoStatus(-r, absl::StrCat("rbd_create2 ", name));
    return RbdImageSpec{.pool = kPool, .image = name};
  }

  // A new image cloned from `parent` (with its snapshot), which this protects.
  absl::StatusOr<RbdImageSpec> CloneImage(const RbdImageSpec& parent, RbdImageLayout layout = {}) {
    rbd_image_t image;
    if (int r = rbd_open(ioctx_, parent.image.c_str(), &image, nullptr); r < 0)
      return ErrnoStatus(-r, "rbd_open");
    int r = rbd_snap_protect(image, parent.snapshot.c_str());
    rbd_close(image);
    if (r < 0) return ErrnoStatus(-r, "rbd_snap_protect");
    const std::string name = NewName();
    if (r = rbd_clone(ioctx_, parent.image.c_str(), parent.snapshot.c_str(), ioctx_, name.c_str(),
                      layout.features, &layout.order);
        r < 0)
      return ErrnoStatus(-r, absl::StrCat("rbd_clone ", name));
    return RbdImageSpec{.pool = kPool, .image = name};
  }

  // Writes `data` at `offset`, then takes snapshot `snapshot` if not empty.
  absl::Status Write(const RbdImageSpec& spec, uint64_t offset, std::span<const std::byte> data,
                     const std::string& snapshot = "") {
    rbd_image_t image;
    if (int r = rbd_open(ioctx_, spec.image.c_str(), &image, nullptr); r < 0)
      return ErrnoStatus(-r, "rbd_open");
    ssize_t written = rbd_write(image, offset, data.size(), reinterpret_cast<const char*>(data.data()));
    int r = written < 0 ? static_cast<int>(written) : 0;
    if (r == 0 && !snapshot.empty()) r = rbd_snap_create(image, snapshot.c_str());
    rbd_close(image);
    return r < 0 ? ErrnoStatus(-r, "rbd_write or rbd_snap_create") : absl::OkStatus();
  }

 private:
  explicit RbdTestPool(std::string conf) : conf_(std::move(conf)) {}

  std::string NewName() { return absl::StrCat("test-", ::getpid(), "-", ++images_); }

  const std::string conf_;
  rados_t cluster_ = nullptr;
  rados_ioctx_t ioctx_ = nullptr;
  int images_ = 0;
};

}  // namespace blkclone::testing

// Connecting to a Ceph cluster and opening an RBD image, with errors that say
// which step failed for which image.
#include "rbd_image.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// `status` with "RBD image SPEC: " in front of its message.
absl::Status ForImage(const RbdImageSpec& spec, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("RBD image ", spec.ToString(), ": ", status.message()));
}

absl::Status ReadConf(rados_t cluster, const std::string& path) {
  if (path.empty()) {
    if (rados_conf_read_file(cluster, nullptr) < 0)
      return absl::NotFoundError(
          "no ceph.conf found (give one, or set CEPH_CONF, or install /etc/ceph/ceph.conf)");
    return absl::OkStatus();
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("ceph.conf ", path));
  if (const int r = rados_conf_read_file(cluster, path.c_str()); r < 0)
    return ErrnoStatus(-r, absl::StrCat("reading ceph.conf ", path));
  return absl::OkStatus();
}

absl::Status SetConf(rados_t cluster, const char* option, const std::string& value) {
  if (const int r = rados_conf_set(cluster, option, value.c_str()); r < 0)
    return ErrnoStatus(-r, absl::StrCat("setting ", option, " = ", value));
  return absl::OkStatus();
}

absl::Status Configure(rados_t cluster, const RbdOptions& options) {
  BLKCLONE_RETURN_IF_ERROR(ReadConf(cluster, options.ceph_conf));
  BLKCLONE_RETURN_IF_ERROR(SetConf(cluster, "rbd_cache", options.cache ? "true" : "false"));
  const std::string connect = std::to_string(options.connect_timeout.count());
  BLKCLONE_RETURN_IF_ERROR(SetConf(cluster, "client_mount_timeout", connect));
  BLKCLONE_RETURN_IF_ERROR(SetConf(cluster, "rados_mon_op_timeout", connect));
  return SetConf(cluster, "rados_osd_op_timeout", std::to_string(options.op_timeout.count()));
}

// kPermissionDenied when refused, kDeadlineExceeded when nobody answered in
// time, else kUnavailable: the cluster cannot be reached.
absl::Status ConnectError(int error_number) {
  const absl::Status status = ErrnoStatus(error_number, "connecting to the cluster");
  if (absl::IsPermissionDenied(status) || absl::IsDeadlineExceeded(status)) return status;
  return absl::UnavailableError(status.message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<RbdImage>> RbdImage::Open(const RbdImageSpec& spec,
                                                         const RbdOptions& options) {
  std::unique_ptr<RbdImage> image(new RbdImage());
  if (const int r = rados_create(&image->cluster_, options.client_id.c_str()); r < 0)
    return ForImage(spec, ErrnoStatus(-r, absl::StrCat("creating client.", options.client_id)));
  if (absl::Status status = Configure(image->cluster_, options); !status.ok())
    return ForImage(spec, status);
  if (const int r = rados_connect(image->cluster_); r < 0) return ForImage(spec, ConnectError(-r));
  if (const int r = rados_ioctx_create(image->cluster_, spec.pool.c_str(), &image->pool_); r < 0)
    return ForImage(spec, r == -ENOENT
                              ? absl::NotFoundError(absl::StrCat("no pool ", spec.pool))
                              : ErrnoStatus(-r, absl::StrCat("opening pool ", spec.pool)));
  rados_ioctx_set_namespace(image->pool_, spec.name_space.c_str());
  const char* snapshot = spec.snapshot.empty() ? nullptr : spec.snapshot.c_str();
  const int r = options.writable
                    ? rbd_open(image->pool_, spec.image.c_str(), &image->image_, nullptr)
                    : rbd_open_read_only(image->pool_, spec.image.c_str(), &image->image_, snapshot);
  if (r < 0) {
    image->image_ = nullptr;
    return ForImage(spec, r == -ENOENT ? absl::NotFoundError("no such image, namespace or snapshot")
                                       : ErrnoStatus(-r, "opening the image"));
  }
  if (const int s = rbd_get_size(image->image_, &image->size_); s < 0)
    return ForImage(spec, ErrnoStatus(-s, "reading the image size"));
  return image;
}

RbdImage::~RbdImage() {
  if (image_ != nullptr) rbd_close(image_);
  if (pool_ != nullptr) rados_ioctx_destroy(pool_);
  if (cluster_ != nullptr) rados_shutdown(cluster_);
}

}  // namespace blkclone::internal

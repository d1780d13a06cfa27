// RbdDevice: a BlockDevice over a Ceph RBD image, through librbd's
// asynchronous API: the source of a clone (a golden image, read-only) or its
// destination (a migration into the cluster).
//
// Each request becomes librbd aio calls whose completions librbd reports on
// its own threads; those callbacks only queue the finished call and wake the
// device's completion thread, which runs the callers' completions and starts
// what comes next. So a completion may submit more I/O (to this device or
// another) without running on, or blocking, a librbd thread.
//   - Read, write, discard, write-zeroes: rbd_aio_read, _write, _discard,
//     _write_zeroes. Discarded ranges do not promise zeroes (librbd skips the
//     parts of a discard smaller than its granularity); write-zeroes removes
//     or punches what it can, so it leaves the image thin.
//   - Block status: rbd_diff_iterate2 since the image's creation, parent
//     included; whole objects from the object map with fast-diff. librbd
//     answers it synchronously, so it runs on a thread of the device's own.
//   - Flush: rbd_aio_flush. With librbd's cache off (the default here, and
//     what every durability test uses), a completed write is durable already:
//     FUA is native and kPreflush needs nothing. With `cache`, kPreflush is a
//     flush in front of the request and kFua a flush after it.
// A snapshot (RbdImageSpec::snapshot) opens read-only. At most
// `max_in_flight` requests are in librbd at once; more wait in a queue, in
// submission order. Destroying the device waits for what is in flight, fails
// what waits with kCancelled, then closes the image and the cluster handle.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto spec, blkclone::RbdImageSpec::Parse("rbd/golden"));
//   BLKCLONE_ASSIGN_OR_RETURN(auto source, blkclone::RbdDevice::Open(spec, {}));
//   BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(*source, 0, block));
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/rbd_image_spec.hpp"

namespace blkclone {
namespace internal {
class RbdImage;
class RbdPipeline;
}  // namespace internal

struct RbdOptions {
  // A source is only read; writes, flushes and discards need this.
  bool writable = false;
  // The ceph.conf to read; empty: librados's search ($CEPH_CONF, then
  // /etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf).
  std::string ceph_conf = "";
  // The client's id, as in client.ID (its keyring comes from the conf).
  std::string client_id = "admin";
  // librbd's write-back cache (rbd_cache); see the top of this file.
  bool cache = false;
  // Requests inside librbd at once.
  int max_in_flight = 128;
  // For connecting to the monitors and opening the image.
  std::chrono::seconds connect_timeout{30};
  // For each operation on an OSD; 0: wait as long as the cluster needs, as
  // librbd does by default. Past it the request fails with kDeadlineExceeded.
  std::chrono::seconds op_timeout{0};
};

class RbdDevice {
 public:
  // Connects to the cluster and opens the image. Errors name the image:
  // kInvalidArgument for bad options, `writable` with a snapshot, or a size
  // that is not a multiple of 512; kNotFound for a missing ceph.conf, pool,
  // namespace, image or snapshot; kUnavailable or kDeadlineExceeded when the
  // cluster cannot be reached; kPermissionDenied when the client may not.
  static absl::StatusOr<std::unique_ptr<RbdDevice>> Open(const RbdImageSpec& spec,
                                                         const RbdOptions& options);
  ~RbdDevice();
  RbdDevice(const RbdDevice&) = delete;
  RbdDevice& operator=(const RbdDevice&) = delete;

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;

  const RbdImageSpec& spec() const { return spec_; }

 private:
  RbdDevice(RbdImageSpec spec, const DeviceInfo& info, std::unique_ptr<internal::RbdImage> image,
            std::unique_ptr<internal::RbdPipeline> pipeline);

  const RbdImageSpec spec_;
  const DeviceInfo info_;
  std::unique_ptr<internal::RbdImage> image_;  // outlives the pipeline
  std::unique_ptr<internal::RbdPipeline> pipeline_;
};

static_assert(BlockDevice<RbdDevice>);

}  // namespace blkclone

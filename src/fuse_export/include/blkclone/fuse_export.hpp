// FuseExport: a BlockDevice as one regular file in a FUSE mount.
//
// Mounting a directory makes it hold a single file (named "disk" unless told
// otherwise) with the device's size and bytes, so that a loop device can be
// attached to it and a real file system mounted on that: a clone used as a
// disk on a machine without device-mapper. Reads and writes on the file go to
// the device directly (no page cache in between) and need not be aligned;
// fsync and close flush the device (a clone then commits its metadata);
// fallocate PUNCH_HOLE|KEEP_SIZE discards and ZERO_RANGE writes zeroes. The
// file's size cannot change. Needs /dev/fuse; users other than root also need
// fusermount3.
//
//   auto fuse = blkclone::FuseExport::Mount(blkclone::AnyBlockDevice::Borrow(clone), "/mnt/c");
//   if (!fuse.ok()) return fuse.status();
//   // losetup --find --show /mnt/c/disk; mount /dev/loopN /mnt/fs; ...
//   // on SIGTERM, from the thread that waits for it: (*fuse)->Stop();
//   (*fuse)->Wait();
//   BLKCLONE_RETURN_IF_ERROR((*fuse)->Unmount());
//
// Threading: Stop and Wait may be called from any thread at any time (not from
// a signal handler); Unmount and the destructor from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"

namespace blkclone {

struct FuseExportOptions {
  // The file's name in the mounted directory; no '/' and not "." or "..".
  std::string file_name = "disk";
  // Lets users other than the one mounting reach the file, within its 0600
  // mode; for non-root users /etc/fuse.conf must say user_allow_other.
  bool allow_other = false;
  // Most FUSE worker threads. Handlers only start device requests, so a few
  // keep many requests in flight.
  int max_threads = 8;
  // Largest read or write the kernel sends in one request (libfuse caps it at 1 MiB).
  uint32_t max_write = 1 << 20;
  // Asynchronous requests (a loop device's) the kernel keeps in flight at most.
  uint16_t max_background = 64;
};

class FuseExport {
 public:
  // Mounts FUSE on `mountpoint`, an existing directory, and serves `device` as
  // the file there until Unmount; returns once the file answers. `device`
  // (when borrowed, what it refers to) must outlive the export.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<FuseExport>> Mount(
      AnyBlockDevice device, const std::string& mountpoint, FuseExportOptions options = {});

  // Unmount()s, dropping its error.
  ~FuseExport();
  FuseExport(const FuseExport&) = delete;
  FuseExport& operator=(const FuseExport&) = delete;

  // The absolute mount point, and the file's path in it.
  const std::string& mountpoint() const;
  std::string file_path() const;

  // Stops serving; returns at once. Requests already with the device still
  // complete; whoever uses the file afterwards waits until Unmount and then
  // fails with ENOTCONN, so detach loop devices and close the file first.
  void Stop();
  // Blocks until the export has stopped serving: after Stop, or once the
  // directory was unmounted from outside (umount, fusermount3 -u).
  void Wait();
  // Stops, waits for the requests still with the device, and unmounts.
  // Idempotent; the error is the session's, if it failed.
  [[nodiscard]] absl::Status Unmount();

 private:
  class Impl;
  explicit FuseExport(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace blkclone

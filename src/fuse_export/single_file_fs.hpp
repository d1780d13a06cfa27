// SingleFileFs: the FUSE file system of the export, a root directory holding
// one regular file whose bytes are a block device's.
//
// Its handlers (for fuse_session_new, with this object as userdata) answer
// metadata requests at once and hand data requests to ByteIo, replying from
// the device's completion. The file:
//   - has the device's size, which never changes (truncation to another size
//     and fallocate that would grow it fail with EPERM and EFBIG);
//   - is opened with direct_io: each read and write goes to the device, none
//     is served from or parked in the page cache;
//   - maps fsync and flush (every close) to a device FLUSH, and fallocate
//     PUNCH_HOLE|KEEP_SIZE to a discard, ZERO_RANGE to write-zeroes;
//   - ends at the device's end: reads there are short, writes fail with ENOSPC.
//
//   internal::SingleFileFs fs(device, {.file_name = "disk"});
//   fuse_session* se = fuse_session_new(&args, &internal::SingleFileFs::Operations(),
//                                       sizeof(fuse_lowlevel_ops), &fs);
//
// Threading: handlers run on any FUSE worker, completions on device threads;
// the object holds no lock across a device call.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdint>
#include <ctime>
#include <string>

#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "byte_io.hpp"

namespace blkclone::internal {

struct SingleFileOptions {
  std::string file_name;
  uint32_t max_write = 0;       // most bytes per read or write request
  uint16_t max_background = 0;  // most asynchronous requests the kernel queues
};

class SingleFileFs {
 public:
  // `device` must outlive the object.
  SingleFileFs(AnyBlockDevice& device, SingleFileOptions options);

  static const fuse_lowlevel_ops& Operations();

  // Returns once every request handed to the device has been answered; with
  // the session loop stopped, nothing starts any more.
  void WaitIdle();

 private:
  static SingleFileFs& Of(fuse_req_t request);
  static void Init(void* userdata, fuse_conn_info* connection);
  static void Lookup(fuse_req_t request, fuse_ino_t parent, const char* name);
  static void GetAttr(fuse_req_t request, fuse_ino_t inode, fuse_file_info* file);
  static void SetAttr(fuse_req_t request, fuse_ino_t inode, struct stat* attr, int to_set,
                      fuse_file_info* file);
  static void ReadDir(fuse_req_t request, fuse_ino_t inode, size_t size, off_t offset,
                      fuse_file_info* file);
  static void Open(fuse_req_t request, fuse_ino_t inode, fuse_file_info* file);
  static void Read(fuse_req_t request, fuse_ino_t inode, size_t size, off_t offset,
                   fuse_file_info* file);
  static void Write(fuse_req_t request, fuse_ino_t inode, const char* buffer, size_t size,
                    off_t offset, fuse_file_info* file);
  static void Flush(fuse_req_t request, fuse_ino_t inode, fuse_file_info* file);
  static void Fsync(fuse_req_t request, fuse_ino_t inode, int datasync, fuse_file_info* file);
  static void Fallocate(fuse_req_t request, fuse_ino_t inode, int mode, off_t offset, off_t length,
                        fuse_file_info* file);

  // The attributes of the root directory or the file; false for another inode.
  bool Attributes(fuse_ino_t inode, struct stat* attr) const;
  // Counts `request` in flight; the callback answers it with the outcome's
  // errno (0 for success) and ends the count.
  Done ReplyWhenDone(fuse_req_t request);
  // A request in flight: handed to the device and not yet answered.
  void Begin();
  void End();

  AnyBlockDevice& device_;
  const SingleFileOptions options_;
  const uint64_t size_;
  const timespec mount_time_;
  ByteIo io_;
  Mutex mu_;
  CondVar idle_cv_;
  uint64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blkclone::internal

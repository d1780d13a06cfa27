// O_DIRECT support shared by DirectDevice and UringDevice: finding the
// alignment the kernel demands, advertising it, and bouncing requests that
// break it.
//
// Bouncing: a read or write whose buffer address is not a multiple of the
// memory alignment, or whose range does not start and end on the offset
// alignment, is carried out through aligned bounce buffers. Whole aligned
// blocks in the middle go straight from the caller's buffer when its address
// allows. A partial block at either end is read whole; for a write it is
// patched and written back (read-modify-write) under a lock striped by block,
// so that non-overlapping writes which share an edge block cannot undo each
// other. Requests that overlap have no order anyway (block_device.hpp), but
// note one more effect: an aligned write overlapping a bounced write's edge
// block may be partly undone by the write-back, outside the bounced request's
// own range. Callers that never overlap writes in flight (the clone engine
// does not) never see it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/device_info.hpp"
#include "blkclone/direct_io_options.hpp"
#include "blkclone/internal/fd_file.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/object_pool.hpp"
#include "blkclone/request.hpp"

namespace blkclone::internal {

// The alignment O_DIRECT needs on `file` (opened with O_DIRECT), raised to
// `options.min_alignment`. Sources, best first: statx(STATX_DIOALIGN) where the
// kernel (6.1+) and file system report it; for a block device its logical
// sector size, for both offsets and memory (a queue's DMA alignment never
// exceeds it); for a regular file st_blksize for both (the file system block,
// a multiple of its device's sector size). The fallbacks may ask for more than
// the kernel needs, which costs bounces, never errors. kUnimplemented if the
// file system reports that the file cannot do direct I/O.
[[nodiscard]] absl::StatusOr<DirectIoAlignment> ProbeDirectIoAlignment(
    const FdFile& file, const DirectIoOptions& options);

// Adapts `info` (from DescribeFdFile) to O_DIRECT: in strict mode it reports
// the direct-I/O alignment, else it keeps its block size, reports memory
// alignment 1 and the device bounces. kInvalidArgument if the size is not a
// multiple of the offset alignment: writing a partial last block would extend
// the file.
[[nodiscard]] absl::Status AdvertiseDirectIo(const FdFile& file, const DirectIoAlignment& alignment,
                                             const DirectIoOptions& options, DeviceInfo& info);

// Moves the data of reads and writes to and from an O_DIRECT descriptor,
// bouncing what breaks the alignment (see the top of this file). Thread-safe.
class DirectTransfer {
 public:
  DirectTransfer(int fd, std::string path, DirectIoAlignment alignment);

  const DirectIoAlignment& alignment() const { return alignment_; }
  // True for a read or write that O_DIRECT would refuse as it is.
  bool NeedsBounce(const Request& request) const;
  // Performs a read or write completely; `rw_flags` (RWF_DSYNC) go to every write.
  absl::Status Transfer(const Request& request, int rw_flags);
  // Requests that went through a bounce buffer so far.
  uint64_t bounces() const { return bounces_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kEdgeLockStripes = 64;
  struct BounceBuffer {
    AlignedBuffer bytes;
  };
  class Lease;

  absl::Status Edge(bool is_read, std::byte* data, uint64_t block, uint64_t from, uint64_t to,
                    int rw_flags);
  absl::Status Whole(bool is_read, std::byte* data, uint64_t from, uint64_t to, int rw_flags);
  absl::Status Raw(bool is_read, std::byte* data, uint64_t length, uint64_t offset, int rw_flags);

  const int fd_;
  const std::string path_;
  const DirectIoAlignment alignment_;
  const uint64_t bounce_size_;
  // Serialise read-modify-write of edge blocks; block b uses stripe b % size.
  std::array<Mutex, kEdgeLockStripes> edge_locks_;
  ObjectPool<BounceBuffer> buffers_;
  std::atomic<uint64_t> bounces_{0};
};

}  // namespace blkclone::internal

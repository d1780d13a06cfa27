// FdIo: pread/pwrite/fdatasync/fallocate/ioctl for one request at a time.
#include "blkclone/internal/fd_io.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/internal/fd_allocation.hpp"
#include "blkclone/internal/positional_io.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

constexpr uint64_t kZeroChunk = 1 << 20;

#ifdef RWF_DSYNC
constexpr int kDsyncFlag = RWF_DSYNC;
#else
constexpr int kDsyncFlag = 0;
#endif

}  // namespace

FdIo::FdIo(FdFile file, uint32_t block_size, std::optional<DirectIoAlignment> direct,
           bool dsync_fua)
    : file_(std::move(file)), block_size_(block_size), dsync_fua_(dsync_fua && kHasDsyncWrites) {
  if (direct.has_value()) direct_.emplace(file_.fd.get(), file_.path, *direct);
}

std::optional<DirectIoAlignment> FdIo::direct_alignment() const {
  if (!direct_.has_value()) return std::nullopt;
  return direct_->alignment();
}

bool FdIo::NeedsBounce(const Request& request) const {
  return direct_.has_value() && direct_->NeedsBounce(request);
}

uint64_t FdIo::bounces() const { return direct_.has_value() ? direct_->bounces() : 0; }

absl::Status FdIo::Perform(const Request& request) {
  const bool fua = (request.flags & kFua) != 0;
  if (request.flags & kPreflush) BLKCLONE_RETURN_IF_ERROR(Sync());
  switch (request.op) {
    case Op::kFlush:
      return Sync();
    case Op::kRead:
      return Transfer(request, 0);
    case Op::kBlockStatus:
      return DescribeFileAllocation(fd(), path(), request.offset, request.length, block_size_,
                                    *request.extents);
    case Op::kWrite:
      if (fua && dsync_fua_) return Transfer(request, kDsyncFlag);
      BLKCLONE_RETURN_IF_ERROR(Transfer(request, 0));
      break;
    case Op::kDiscard:
      BLKCLONE_RETURN_IF_ERROR(Discard(request.offset, request.length));
      break;
    case Op::kWriteZeroes:
      BLKCLONE_RETURN_IF_ERROR(WriteZeroes(request.offset, request.length));
      break;
  }
  return fua ? Sync() : absl::OkStatus();
}

absl::Status FdIo::Transfer(const Request& request, int rw_flags) {
  if (direct_.has_value()) return direct_->Transfer(request, rw_flags);
  return PositionalIo(fd(), path(), request.op == Op::kRead, request.data, request.length,
                      request.offset, rw_flags);
}

absl::Status FdIo::Sync() {
  while (::fdatasync(fd()) != 0) {
    if (errno != EINTR) return ErrnoStatus(errno, absl::StrCat("fdatasync ", path()));
  }
  return absl::OkStatus();
}

absl::Status FdIo::Discard(uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  if (is_block_device()) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd(), BLKDISCARD, range) != 0)
      return ErrnoStatus(errno, "ioctl BLKDISCARD", offset, length);
    return absl::OkStatus();
  }
  if (::fallocate(fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    // A file system without hole punching still honours the contract this way.
    if (errno == EOPNOTSUPP) return WriteZeroes(offset, length);
    return ErrnoStatus(errno, "fallocate punch-hole", offset, length);
  }
  return absl::OkStatus();
}

absl::Status FdIo::WriteZeroes(uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  if (is_block_device()) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd(), BLKZEROOUT, range) == 0) return absl::OkStatus();
  } else if (::fallocate(fd(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                         static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
    return absl::OkStatus();
  }
  if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL)
    return ErrnoStatus(errno, "write-zeroes", offset, length);
  // Page-aligned, so that O_DIRECT only bounces what the range itself needs.
  const uint64_t chunk_size = std::min(length, kZeroChunk);
  AlignedBuffer zeroes = AlignedBuffer::Zeroed(chunk_size, 4096);
  for (uint64_t done = 0; done < length;) {
    const uint64_t chunk = std::min(chunk_size, length - done);
    BLKCLONE_RETURN_IF_ERROR(Transfer(Request::Write(offset + done, {zeroes.data(), chunk}), 0));
    done += chunk;
  }
  return absl::OkStatus();
}

}  // namespace blkclone::internal

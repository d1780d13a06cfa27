// O_DIRECT alignment probing and bounce buffers.
#include "blkclone/internal/direct_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/positional_io.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

constexpr uint64_t kBounceSize = 256 << 10;

// STATX_DIOALIGN's answer, or nullopt when the kernel or file system gives
// none. An answer of 0 means the file cannot do direct I/O.
std::optional<DirectIoAlignment> StatxAlignment([[maybe_unused]] int fd) {
#ifdef STATX_DIOALIGN
  struct statx stx = {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) != 0) {
    return DirectIoAlignment{stx.stx_dio_offset_align, stx.stx_dio_mem_align};
  }
#endif
  return std::nullopt;
}

}  // namespace

absl::StatusOr<DirectIoAlignment> ProbeDirectIoAlignment(const FdFile& file,
                                                         const DirectIoOptions& options) {
  if (options.min_alignment != 0 && !std::has_single_bit(options.min_alignment))
    return absl::InvalidArgumentError(absl::StrCat(file.path, ": minimum direct-I/O alignment ",
                                                   options.min_alignment,
                                                   " is not a power of two"));
  std::optional<DirectIoAlignment> reported = StatxAlignment(file.fd.get());
  if (reported.has_value() && reported->offset == 0)
    return absl::UnimplementedError(
        absl::StrCat(file.path, ": the file system reports no direct I/O for this file"));
  DirectIoAlignment alignment;
  if (reported.has_value()) {
    alignment = *reported;
  } else if (file.is_block_device) {
    alignment = {file.sector_size, file.sector_size};
  } else {
    struct stat st;
    if (::fstat(file.fd.get(), &st) != 0)
      return ErrnoStatus(errno, absl::StrCat("fstat ", file.path));
    alignment = {static_cast<uint32_t>(st.st_blksize), static_cast<uint32_t>(st.st_blksize)};
  }
  // Powers of two in practice; rounding keeps them so for block arithmetic and
  // aligned allocation.
  alignment.offset = std::bit_ceil(std::max({alignment.offset, options.min_alignment, 1u}));
  alignment.memory = std::bit_ceil(std::max({alignment.memory, options.min_alignment, 1u}));
  return alignment;
}

absl::Status AdvertiseDirectIo(const FdFile& file, const DirectIoAlignment& alignment,
                               const DirectIoOptions& options, DeviceInfo& info) {
  if (info.size % alignment.offset != 0)
    return absl::InvalidArgumentError(absl::StrCat(file.path, ": size ", info.size,
                                                   " is not a multiple of the direct-I/O ",
                                                   "alignment ", alignment.offset));
  if (options.strict_alignment) {
    info.logical_block_size = std::max(info.logical_block_size, alignment.offset);
    info.memory_alignment = alignment.memory;
  } else {
    info.memory_alignment = 1;
  }
  return absl::OkStatus();
}

// A bounce buffer borrowed from the pool for one request.
class DirectTransfer::Lease {
 public:
  explicit Lease(DirectTransfer& owner) : owner_(owner), buffer_(owner.buffers_.Get()) {
    if (buffer_->bytes.empty())
      buffer_->bytes = AlignedBuffer::Zeroed(owner.bounce_size_,
                                             std::max<size_t>(owner.alignment_.memory, 4096));
  }
  ~Lease() { owner_.buffers_.Put(buffer_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  std::byte* get() const { return buffer_->bytes.data(); }

 private:
  DirectTransfer& owner_;
  BounceBuffer* buffer_;
};

DirectTransfer::DirectTransfer(int fd, std::string path, DirectIoAlignment alignment)
    : fd_(fd),
      path_(std::move(path)),
      alignment_(alignment),
      bounce_size_(std::max<uint64_t>(kBounceSize, alignment.offset)) {}

bool DirectTransfer::NeedsBounce(const Request& request) const {
  if ((request.op != Op::kRead && request.op != Op::kWrite) || request.length == 0) return false;
  return (request.offset | request.length) % alignment_.offset != 0 ||
         reinterpret_cast<uintptr_t>(request.data) % alignment_.memory != 0;
}

absl::Status DirectTransfer::Transfer(const Request& request, int rw_flags) {
  const bool is_read = request.op == Op::kRead;
  if (!NeedsBounce(request))
    return Raw(is_read, request.data, request.length, request.offset, rw_flags);
  bounces_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t block_size = alignment_.offset;
  const uint64_t end = request.offset + request.length;
  for (uint64_t pos = request.offset; pos < end;) {
    std::byte* data = request.data + (pos - request.offset);
    const uint64_t block = pos / block_size * block_size;
    if (pos != block || end - pos < block_size) {  // a partial block at an edge
      const uint64_t to = std::min(end, block + block_size);
      BLKCLONE_RETURN_IF_ERROR(Edge(is_read, data, block, pos, to, rw_flags));
      pos = to;
    } else {
      const uint64_t to = end / block_size * block_size;
      BLKCLONE_RETURN_IF_ERROR(Whole(is_read, data, pos, to, rw_flags));
      pos = to;
    }
  }
  return absl::OkStatus();
}

absl::Status DirectTransfer::Edge(bool is_read, std::byte* data, uint64_t block, uint64_t from,
                                  uint64_t to, int rw_flags) {
  Lease buffer(*this);
  std::byte* in_block = buffer.get() + (from - block);
  if (is_read) {
    // No lock: writers sharing this block rewrite only their own bytes, and
    // put back the values they read for the rest, which include ours.
    BLKCLONE_RETURN_IF_ERROR(Raw(true, buffer.get(), alignment_.offset, block, 0));
    std::memcpy(data, in_block, to - from);
    return absl::OkStatus();
  }
  MutexLock lock(edge_locks_[(block / alignment_.offset) % kEdgeLockStripes]);
  BLKCLONE_RETURN_IF_ERROR(Raw(true, buffer.get(), alignment_.offset, block, 0));
  std::memcpy(in_block, data, to - from);
  return Raw(false, buffer.get(), alignment_.offset, block, rw_flags);
}

absl::Status DirectTransfer::Whole(bool is_read, std::byte* data, uint64_t from, uint64_t to,
                                   int rw_flags) {
  if (reinterpret_cast<uintptr_t>(data) % alignment_.memory == 0)
    return Raw(is_read, data, to - from, from, rw_flags);
  Lease buffer(*this);
  for (uint64_t at = from; at < to;) {
    const uint64_t n = std::min(bounce_size_, to - at);
    std::byte* part = data + (at - from);
    if (is_read) {
      BLKCLONE_RETURN_IF_ERROR(Raw(true, buffer.get(), n, at, 0));
      std::memcpy(part, buffer.get(), n);
    } else {
      std::memcpy(buffer.get(), part, n);
      BLKCLONE_RETURN_IF_ERROR(Raw(false, buffer.get(), n, at, rw_flags));
    }
    at += n;
  }
  return absl::OkStatus();
}

absl::Status DirectTransfer::Raw(bool is_read, std::byte* data, uint64_t length, uint64_t offset,
                                 int rw_flags) {
  return PositionalIo(fd_, path_, is_read, data, length, offset, rw_flags);
}

}  // namespace blkclone::internal

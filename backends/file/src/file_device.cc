// FileDevice: worker threads running pread/pwrite/fdatasync/fallocate.
#include "blkclone/file_device.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone {
namespace {

constexpr uint64_t kZeroChunk = 1 << 20;

absl::Status CheckBlockSize(uint32_t block_size) {
  if (block_size < 512 || !std::has_single_bit(block_size))
    return absl::InvalidArgumentError(
        absl::StrCat("logical block size ", block_size, " is not a power of two >= 512"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileDevice>> FileDevice::Open(const std::string& path,
                                                             const Options& options) {
  if (options.worker_threads < 1)
    return absl::InvalidArgumentError(absl::StrCat(path, ": worker_threads must be >= 1"));
  internal::UniqueFd fd(::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
  DeviceInfo info;
  info.caps.read_only = options.read_only;
  info.caps.discard = true;
  info.caps.write_zeroes = true;
  info.caps.fua = FuaSupport::kEmulated;
  const bool is_block_device = S_ISBLK(st.st_mode);
  if (is_block_device) {
    int sector_size = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &info.size) != 0 ||
        ::ioctl(fd.get(), BLKSSZGET, &sector_size) != 0)
      return ErrnoStatus(errno, absl::StrCat("ioctl BLKGETSIZE64/BLKSSZGET ", path));
    info.logical_block_size = static_cast<uint32_t>(sector_size);
  } else if (S_ISREG(st.st_mode)) {
    info.size = static_cast<uint64_t>(st.st_size);
    info.logical_block_size = options.logical_block_size;
    info.caps.discard_zeroes_data = true;  // a punched hole reads back as zeroes
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": neither a regular file nor a block device"));
  }
  if (absl::Status s = CheckBlockSize(info.logical_block_size); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  if (info.size % info.logical_block_size != 0)
    return absl::InvalidArgumentError(absl::StrCat(path, ": size ", info.size,
                                                   " is not a multiple of the block size ",
                                                   info.logical_block_size));
  return std::unique_ptr<FileDevice>(
      new FileDevice(path, std::move(fd), is_block_device, info, options.worker_threads));
}

FileDevice::FileDevice(std::string path, internal::UniqueFd fd, bool is_block_device,
                       DeviceInfo info, int threads)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      is_block_device_(is_block_device),
      info_(info),
      workers_(threads, [this](Request& request) { request.Complete(Perform(request)); }) {}

void FileDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok()) {
    request.Complete(std::move(status));
    return;
  }
  workers_.Push(request);
}

absl::Status FileDevice::Perform(const Request& request) {
  if (request.flags & kPreflush) BLKCLONE_RETURN_IF_ERROR(Sync());
  switch (request.op) {
    case Op::kFlush:
      return Sync();
    case Op::kRead:
      return Transfer(request);
    case Op::kWrite:
      BLKCLONE_RETURN_IF_ERROR(Transfer(request));
      break;
    case Op::kDiscard:
      BLKCLONE_RETURN_IF_ERROR(Discard(request.offset, request.length));
      break;
    case Op::kWriteZeroes:
      BLKCLONE_RETURN_IF_ERROR(WriteZeroes(request.offset, request.length));
      break;
  }
  return (request.flags & kFua) ? Sync() : absl::OkStatus();
}

absl::Status FileDevice::Transfer(const Request& request) {
  const bool is_read = request.op == Op::kRead;
  uint64_t done = 0;
  while (done < request.length) {
    const uint64_t offset = request.offset + done;
    const uint64_t remaining = request.length - done;
    ssize_t n = is_read ? ::pread(fd_.get(), request.data + done, remaining, offset)
                        : ::pwrite(fd_.get(), request.data + done, remaining, offset);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoStatus(errno, is_read ? "pread" : "pwrite", offset, remaining);
    }
    if (n == 0) {
      // The file shrank under us: report it instead of returning stale bytes.
      return absl::OutOfRangeError(absl::StrCat(path_, ": unexpected end of file at offset ",
                                                offset, " (size changed while open?)"));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FileDevice::Sync() {
  while (::fdatasync(fd_.get()) != 0) {
    if (errno != EINTR) return ErrnoStatus(errno, absl::StrCat("fdatasync ", path_));
  }
  return absl::OkStatus();
}

absl::Status FileDevice::Discard(uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  if (is_block_device_) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_.get(), BLKDISCARD, range) != 0)
      return ErrnoStatus(errno, "ioctl BLKDISCARD", offset, length);
    return absl::OkStatus();
  }
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    // A file system without hole punching still honours the contract this way.
    if (errno == EOPNOTSUPP) return WriteZeroes(offset, length);
    return ErrnoStatus(errno, "fallocate punch-hole", offset, length);
  }
  return absl::OkStatus();
}

absl::Status FileDevice::WriteZeroes(uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  if (is_block_device_) {
    uint64_t range[2] = {offset, length};
    if (::ioctl(fd_.get(), BLKZEROOUT, range) == 0) return absl::OkStatus();
  } else if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                         static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
    return absl::OkStatus();
  }
  if (errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL)
    return ErrnoStatus(errno, "write-zeroes", offset, length);
  std::vector<std::byte> zeroes(std::min(length, kZeroChunk));
  for (uint64_t done = 0; done < length;) {
    const uint64_t chunk = std::min<uint64_t>(zeroes.size(), length - done);
    Request write = Request::Write(offset + done, std::span(zeroes).first(chunk));
    BLKCLONE_RETURN_IF_ERROR(Transfer(write));
    done += chunk;
  }
  return absl::OkStatus();
}

}  // namespace blkclone

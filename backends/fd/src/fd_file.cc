// Opening files and block devices and reading their geometry.
#include "blkclone/internal/fd_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {

absl::StatusOr<FdFile> OpenFdFile(const std::string& path, bool read_only, bool direct) {
  FdFile file;
  file.path = path;
  file.fd = UniqueFd(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!file.fd) return ErrnoStatus(errno, absl::StrCat("open ", path));
  const int fd = file.fd.get();
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
  file.is_block_device = S_ISBLK(st.st_mode);
  if (file.is_block_device) {
    int sector_size = 0;
    if (::ioctl(fd, BLKGETSIZE64, &file.size) != 0 || ::ioctl(fd, BLKSSZGET, &sector_size) != 0)
      return ErrnoStatus(errno, absl::StrCat("ioctl BLKGETSIZE64/BLKSSZGET ", path));
    file.sector_size = static_cast<uint32_t>(sector_size);
  } else if (S_ISREG(st.st_mode)) {
    file.size = static_cast<uint64_t>(st.st_size);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": neither a regular file nor a block device"));
  }
  // Set after the type check so that EINVAL can only mean "no O_DIRECT here".
  if (direct && ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_DIRECT) != 0) {
    if (errno == EINVAL)
      return absl::UnimplementedError(absl::StrCat(
          path, ": the file system does not support O_DIRECT (tmpfs before Linux 6.6?)"));
    return ErrnoStatus(errno, absl::StrCat("fcntl O_DIRECT ", path));
  }
  return file;
}

absl::StatusOr<DeviceInfo> DescribeFdFile(const FdFile& file, uint32_t file_block_size,
                                          bool read_only) {
  DeviceInfo info;
  info.size = file.size;
  info.logical_block_size = file.is_block_device ? file.sector_size : file_block_size;
  info.caps.read_only = read_only;
  info.caps.discard = true;
  info.caps.write_zeroes = true;
  info.caps.fua = FuaSupport::kEmulated;
  // A punched hole reads back as zeroes; BLKDISCARD promises nothing.
  info.caps.discard_zeroes_data = !file.is_block_device;
  // A block device's lseek reports all data: only files have holes to tell.
  info.caps.block_status = !file.is_block_device;
  if (info.logical_block_size < 512 || !std::has_single_bit(info.logical_block_size))
    return absl::InvalidArgumentError(absl::StrCat(file.path, ": logical block size ",
                                                   info.logical_block_size,
                                                   " is not a power of two >= 512"));
  if (info.size % info.logical_block_size != 0)
    return absl::InvalidArgumentError(absl::StrCat(file.path, ": size ", info.size,
                                                   " is not a multiple of the block size ",
                                                   info.logical_block_size));
  return info;
}

}  // namespace blkclone::internal

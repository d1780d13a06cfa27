// pread / pwritev2 until every byte has moved.
#include "blkclone/internal/positional_io.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {

absl::Status PositionalIo(int fd, absl::string_view path, bool is_read, std::byte* data,
                          uint64_t length, uint64_t offset, int rw_flags) {
  uint64_t done = 0;
  while (done < length) {
    const uint64_t at = offset + done;
    const uint64_t remaining = length - done;
    ssize_t n;
    if (is_read) {
      n = ::pread(fd, data + done, remaining, static_cast<off_t>(at));
    } else if (rw_flags != 0) {
      struct iovec iov = {data + done, remaining};
      n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(at), rw_flags);
    } else {
      n = ::pwrite(fd, data + done, remaining, static_cast<off_t>(at));
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoStatus(errno, is_read ? "pread" : "pwrite", at, remaining);
    }
    if (n == 0) {
      // The file shrank under us: report it instead of returning stale bytes.
      return absl::OutOfRangeError(absl::StrCat(path, ": unexpected end of file at offset ", at,
                                                " (size changed while open?)"));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace blkclone::internal

// Blocking socket I/O for NBD sessions: whole messages or an error.
#include "socket_stream.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

#include "blkclone/status.hpp"

namespace blkclone::internal {

absl::Status SocketStream::Read(std::span<std::byte> buffer) {
  while (!buffer.empty()) {
    if (reading_stopped_.load(std::memory_order_acquire))
      return absl::CancelledError("the server stopped reading");
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n == 0) return absl::UnavailableError("the client closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "recv");
    }
    buffer = buffer.subspan(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SocketStream::Write(std::span<const std::span<const std::byte>> pieces) {
  std::vector<iovec> iov;
  iov.reserve(pieces.size());
  for (std::span<const std::byte> piece : pieces) {
    if (!piece.empty()) iov.push_back({const_cast<std::byte*>(piece.data()), piece.size()});
  }
  size_t first = 0;
  while (first < iov.size()) {
    msghdr message{};
    message.msg_iov = iov.data() + first;
    message.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    ssize_t n = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "sendmsg");
    }
    // Skip what went out, which may end inside a piece.
    for (auto sent = static_cast<size_t>(n); sent > 0;) {
      const size_t step = std::min(sent, iov[first].iov_len);
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + step;
      iov[first].iov_len -= step;
      sent -= step;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return absl::OkStatus();
}

void SocketStream::StopReading() {
  reading_stopped_.store(true, std::memory_order_release);
  ::shutdown(fd_.get(), SHUT_RD);
}

void SocketStream::Disconnect() { ::shutdown(fd_.get(), SHUT_RDWR); }

}  // namespace blkclone::internal

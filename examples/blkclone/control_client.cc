// Connects to a control socket, sends one request and reads the response.
#include "control_client.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "protocol.hpp"
#include "socket_address.hpp"

namespace blkclone::cli {

absl::StatusOr<std::string> AskControlSocket(const std::filesystem::path& path,
                                             absl::string_view request) {
  BLKCLONE_ASSIGN_OR_RETURN(sockaddr_un address, SocketAddress(path));
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED)
      return absl::UnavailableError(absl::StrCat("no server at ", path.string()));
    return ErrnoStatus(errno, absl::StrCat("connect ", path.string()));
  }
  const timeval timeout = {.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  const std::string line = absl::StrCat(request, "\n");
  for (size_t sent = 0; sent < line.size();) {
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("send to ", path.string()));
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("receive from ", path.string()));
    if (n == 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  return DecodeResponse(response);
}

}  // namespace blkclone::cli

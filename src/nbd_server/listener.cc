// Listening sockets for the NBD server: Unix (with stale-socket cleanup) and TCP.
#include "listener.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

constexpr int kBacklog = 64;

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("bad Unix socket path \"", path, "\""));
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// Removes a socket file that nobody accepts on; refuses to touch anything else.
absl::Status ClearStaleSocket(const std::string& path, const sockaddr_un& address) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    return errno == ENOENT ? absl::OkStatus() : ErrnoStatus(errno, "stat " + path);
  if (!S_ISSOCK(st.st_mode))
    return absl::AlreadyExistsError(absl::StrCat(path, " exists and is not a socket"));
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return ErrnoStatus(errno, "socket");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0)
    return absl::AlreadyExistsError(absl::StrCat("a server is listening on ", path));
  if (errno != ECONNREFUSED) return ErrnoStatus(errno, "connect " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "unlink " + path);
  return absl::OkStatus();
}

absl::StatusOr<Listener> ListenUnix(const NbdListenAddress& where) {
  BLKCLONE_ASSIGN_OR_RETURN(const sockaddr_un address, UnixAddress(where.path));
  BLKCLONE_RETURN_IF_ERROR(ClearStaleSocket(where.path, address));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
    return ErrnoStatus(errno, "bind " + where.path);
  if (::listen(fd.get(), kBacklog) != 0) return ErrnoStatus(errno, "listen " + where.path);
  return Listener{std::move(fd), where};
}

uint16_t BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

absl::StatusOr<Listener> ListenTcp(const NbdListenAddress& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(where.port);
  if (int rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", where.host, ": ", ::gai_strerror(rc)));
  absl::Status failure = absl::UnavailableError(absl::StrCat("no address for ", where.host));
  Listener listener;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      failure = ErrnoStatus(errno, "socket");
      continue;
    }
    // A restarted server must not wait out the old connections' TIME_WAIT.
    const int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), kBacklog) != 0) {
      failure = ErrnoStatus(errno, absl::StrCat("listen on ", where.ToString()));
      continue;
    }
    listener.address = NbdListenAddress::Tcp(where.host, BoundPort(fd.get()));
    listener.fd = std::move(fd);
    break;
  }
  ::freeaddrinfo(found);
  if (!listener.fd) return failure;
  return listener;
}

}  // namespace

absl::StatusOr<Listener> Listen(const NbdListenAddress& address) {
  return address.kind == NbdListenAddress::Kind::kUnix ? ListenUnix(address) : ListenTcp(address);
}

}  // namespace blkclone::internal

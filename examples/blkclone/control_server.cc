// The control socket server: accept loop, request dispatch, responses.
#include "control_server.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "blkclone/status.hpp"
#include "protocol.hpp"
#include "socket_address.hpp"

namespace blkclone::cli {

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::filesystem::path& path, Session& session) {
  // Bound under a temporary name and renamed once listening, so that a client
  // that sees the socket can connect.
  const std::filesystem::path temporary = path.string() + ".new";
  BLKCLONE_ASSIGN_OR_RETURN(sockaddr_un address, SocketAddress(temporary));
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  auto fail = [fd](absl::Status status) {
    ::close(fd);
    return status;
  };
  ::unlink(temporary.c_str());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
    return fail(ErrnoStatus(errno, absl::StrCat("bind ", temporary.string())));
  if (::chmod(temporary.c_str(), 0600) != 0 || ::listen(fd, 16) != 0 ||
      ::rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status status = ErrnoStatus(errno, absl::StrCat("listen on ", path.string()));
    ::unlink(temporary.c_str());
    return fail(std::move(status));
  }
  const int wake = ::eventfd(0, EFD_CLOEXEC);
  if (wake < 0) {
    ::unlink(path.c_str());
    return fail(ErrnoStatus(errno, "eventfd"));
  }
  return std::unique_ptr<ControlServer>(new ControlServer(path, session, fd, wake));
}

ControlServer::ControlServer(std::filesystem::path path, Session& session, int listen_fd,
                             int wake_fd)
    : path_(std::move(path)), session_(session), listen_fd_(listen_fd), wake_fd_(wake_fd) {
  thread_ = std::thread([this] { Run(); });
}

ControlServer::~ControlServer() {
  ::unlink(path_.c_str());
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void ControlServer::Run() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    const int connection = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    Serve(connection);
    ::close(connection);
  }
}

void ControlServer::Serve(int connection) {
  const timeval timeout = {.tv_sec = 2, .tv_usec = 0};
  ::setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::string request;
  char buffer[512];
  while (request.find('\n') == std::string::npos && request.size() <= kMaxRequestBytes) {
    const ssize_t n = ::recv(connection, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  const std::string response =
      request.size() > kMaxRequestBytes
          ? EncodeResponse(absl::InvalidArgumentError("request: too long"))
          : Handle(absl::string_view(request).substr(0, request.find('\n')));
  for (size_t sent = 0; sent < response.size();) {
    const ssize_t n =
        ::send(connection, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

std::string ControlServer::Handle(absl::string_view request) {
  const std::vector<std::string> words =
      absl::StrSplit(request, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (words.empty()) return EncodeResponse(absl::InvalidArgumentError("request: empty"));
  if (words[0] == "status" && words.size() <= 2) {
    const std::string form = words.size() == 2 ? words[1] : "dm";
    const CloneStatus status = session_.Status();
    if (form == "dm") return EncodeResponse(FormatStatusLine(status) + "\n");
    if (form == "json") return EncodeResponse(FormatStatusJson(status) + "\n");
    if (form == "human") return EncodeResponse(FormatStatusHuman(status));
    return EncodeResponse(absl::InvalidArgumentError(
        absl::StrCat("status form ", form, ": unknown (dm, json or human)")));
  }
  if (words[0] == "message") {
    absl::StatusOr<ControlMessage> message =
        ParseMessage(std::span<const std::string>(words).subspan(1));
    if (!message.ok()) return EncodeResponse(message.status());
    session_.Apply(*message);
    return EncodeResponse(std::string());
  }
  return EncodeResponse(absl::InvalidArgumentError(
      absl::StrCat("request ", request, ": unknown (status [dm|json|human] or message ...)")));
}

}  // namespace blkclone::cli

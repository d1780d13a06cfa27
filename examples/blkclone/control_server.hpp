// ControlServer: answers status and message requests for a running Session on
// its Unix control socket, on a thread of its own, one connection at a time
// (requests are short; a client that stalls is cut off after two seconds).
#pragma once

#include <filesystem>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "session.hpp"

namespace blkclone::cli {

class ControlServer {
 public:
  // Listens on `path`, replacing a stale socket (the caller holds the clone's
  // lock, so no other server can be there). The socket appears at `path` only
  // once it accepts connections.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(const std::filesystem::path& path,
                                                              Session& session);
  // Stops answering and removes the socket.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  ControlServer(std::filesystem::path path, Session& session, int listen_fd, int wake_fd);
  void Run();
  void Serve(int connection);
  std::string Handle(absl::string_view request);

  const std::filesystem::path path_;
  Session& session_;
  const int listen_fd_;
  const int wake_fd_;  // an eventfd that ends Run
  std::thread thread_;
};

}  // namespace blkclone::cli

// SocketStream: an NbdStream over a connected stream socket (Unix or TCP).
//
//   internal::SocketStream stream(std::move(accepted_fd));
//   internal::NbdConnection(stream, device, spec, limits).Serve();
#pragma once

#include <atomic>

#include "blkclone/internal/nbd_stream.hpp"
#include "blkclone/internal/unique_fd.hpp"

namespace blkclone::internal {

class SocketStream final : public NbdStream {
 public:
  explicit SocketStream(UniqueFd fd) : fd_(std::move(fd)) {}

  absl::Status Read(std::span<std::byte> buffer) override;
  // Never raises SIGPIPE: a client that went away is an error return.
  absl::Status Write(std::span<const std::span<const std::byte>> pieces) override;
  // shutdown(SHUT_RD) wakes a blocked recv; the flag covers data a TCP socket
  // still delivers after it.
  void StopReading() override;
  void Disconnect() override;

 private:
  const UniqueFd fd_;
  std::atomic<bool> reading_stopped_{false};
};

}  // namespace blkclone::internal

// NbdClient: one libnbd handle, moved along by its owner's poll loop: the
// handshake, sending NbdCommands, and handing them back once libnbd has let go
// of them (answered, refused, or dropped with the connection).
//
// Not thread-safe: one thread makes every call, and libnbd runs the command
// callbacks inside those calls, on that thread. libnbd.h stays out of this
// header so that users of the backend do not need it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blkclone/internal/nbd_client_command.hpp"
#include "blkclone/nbd_options.hpp"

struct nbd_handle;

namespace blkclone::internal {

class NbdClient {
 public:
  // Starts connecting to `uri` (with structured replies requested); the
  // handshake goes on in Notify. Errors name the URI: kInvalidArgument for a
  // malformed one, kNotFound / kUnavailable when nothing listens there.
  static absl::StatusOr<std::unique_ptr<NbdClient>> Start(const std::string& uri);
  // Start, then waits for the end of the handshake, at most `timeout`
  // (kDeadlineExceeded). A missing export is kNotFound.
  static absl::StatusOr<std::unique_ptr<NbdClient>> Connect(const std::string& uri,
                                                            std::chrono::milliseconds timeout);
  // Closes the handle; call Close first to get the commands back.
  ~NbdClient();
  NbdClient(const NbdClient&) = delete;
  NbdClient& operator=(const NbdClient&) = delete;

  // The handshake is over and commands may be sent.
  bool established() const;
  // The connection is gone (or the handshake failed).
  bool dead() const;
  // The socket and the poll(2) events libnbd waits for on it.
  int fd() const;
  short events() const;
  // Moves libnbd along after poll(2) reported `revents` on fd(); an error
  // means the connection is gone.
  [[nodiscard]] absl::Status Notify(short revents);

  // The export as negotiated; once established.
  [[nodiscard]] absl::StatusOr<NbdExportInfo> Describe() const;

  // Sends `wire` for `command`, which stays in in_flight() until released.
  void Send(NbdClientCommand& command, const NbdWireCommand& wire);
  const NbdCommandList& in_flight() const { return in_flight_; }
  // Moves the commands libnbd has released (answered, refused, dropped) to `out`.
  void TakeReleased(NbdCommandList& out);
  // Drops the connection; every command in flight is released, unanswered.
  void Close(NbdCommandList& released);

 private:
  explicit NbdClient(nbd_handle* handle) : handle_(handle) {}

  nbd_handle* handle_;
  NbdCommandList in_flight_;
};

// libnbd's last error on this thread as a Status: the code from its errno,
// the message prefixed with `context`.
absl::Status LibnbdError(absl::string_view context);

}  // namespace blkclone::internal

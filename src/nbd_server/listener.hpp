// Listen: a listening socket for an NbdListenAddress.
//
//   BLKCLONE_ASSIGN_OR_RETURN(internal::Listener listener, internal::Listen(address));
//   int client = ::accept4(listener.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
#pragma once

#include "absl/status/statusor.h"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/nbd_server.hpp"

namespace blkclone::internal {

struct Listener {
  UniqueFd fd;
  NbdListenAddress address;  // as bound: the chosen port for TCP port 0
};

// Binds and listens. A Unix socket file nobody listens on any more (left by a
// killed server) is replaced; a live one, or another kind of file, is an error.
[[nodiscard]] absl::StatusOr<Listener> Listen(const NbdListenAddress& address);

}  // namespace blkclone::internal

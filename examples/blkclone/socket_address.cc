// Unix socket addresses, with the length limit spelled out.
#include "socket_address.hpp"

#include <sys/socket.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace blkclone::cli {

absl::StatusOr<sockaddr_un> SocketAddress(const std::filesystem::path& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  const std::string& text = path.native();
  if (text.size() >= sizeof(address.sun_path))
    return absl::InvalidArgumentError(absl::StrCat("control socket ", text, ": path longer than ",
                                                   sizeof(address.sun_path) - 1,
                                                   " bytes; use a shorter --state-dir"));
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

}  // namespace blkclone::cli

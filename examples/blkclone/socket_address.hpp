// The sockaddr_un of a control socket path, shared by its server and client.
#pragma once

#include <sys/un.h>

#include <filesystem>

#include "absl/status/statusor.h"

namespace blkclone::cli {

// kInvalidArgument, naming the path, when it does not fit in sun_path.
absl::StatusOr<sockaddr_un> SocketAddress(const std::filesystem::path& path);

}  // namespace blkclone::cli

// The client side of the control socket, for `blkclone status` and `message`.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace blkclone::cli {

// Sends `request` (one line, without its newline) and returns the response's
// payload or the server's error. kUnavailable when no server listens at `path`.
absl::StatusOr<std::string> AskControlSocket(const std::filesystem::path& path,
                                             absl::string_view request);

}  // namespace blkclone::cli

// The control socket's wire format (documented in the manual, CONTROL SOCKET):
// one request line from the client; a response whose first line is "ok" and
// the payload, or "error CODE TEXT"; then the server closes the connection.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace blkclone::cli {

// Requests longer than this are refused; no valid request comes close.
inline constexpr size_t kMaxRequestBytes = 4096;

std::string EncodeResponse(const absl::StatusOr<std::string>& payload);
// The payload, or the server's error with its code; kInternal if malformed.
absl::StatusOr<std::string> DecodeResponse(absl::string_view response);

}  // namespace blkclone::cli

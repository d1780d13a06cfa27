// Encoding and decoding of control socket responses.
#include "protocol.hpp"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace blkclone::cli {

std::string EncodeResponse(const absl::StatusOr<std::string>& payload) {
  if (payload.ok()) return absl::StrCat("ok\n", *payload);
  // The error stays on its one line.
  return absl::StrCat("error ", absl::StatusCodeToString(payload.status().code()), " ",
                      absl::StrReplaceAll(payload.status().message(), {{"\n", " "}}), "\n");
}

absl::StatusOr<std::string> DecodeResponse(absl::string_view response) {
  if (absl::ConsumePrefix(&response, "ok\n")) return std::string(response);
  if (absl::ConsumePrefix(&response, "error ")) {
    const size_t space = response.find(' ');
    const absl::string_view code = response.substr(0, space);
    const absl::string_view text =
        space == absl::string_view::npos ? "" : absl::StripSuffix(response.substr(space + 1), "\n");
    for (int c = 1; c <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++c) {
      if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == code)
        return absl::Status(static_cast<absl::StatusCode>(c), text);
    }
  }
  return absl::InternalError(
      absl::StrCat("malformed response from the control socket: ", response.substr(0, 80)));
}

}  // namespace blkclone::cli

// JSON as blkclone prints it: one line, no spaces, keys in the order written.
// Private to the library's sources: nlohmann-json is not part of its interface.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace blkclone::internal {

// `json` as compact text. Strings that are not UTF-8 (a device path, an error
// from the system) have their bad bytes replaced by U+FFFD instead of throwing.
inline std::string JsonText(const nlohmann::ordered_json& json) {
  return json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace blkclone::internal

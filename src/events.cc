// Names of clone modes.
#include "blkclone/events.hpp"

namespace blkclone {

absl::string_view ModeName(CloneMode mode) {
  switch (mode) {
    case CloneMode::kReadWrite:
      return "rw";
    case CloneMode::kReadOnly:
      return "ro";
    case CloneMode::kFail:
      return "Fail";
  }
  return "unknown";
}

}  // namespace blkclone

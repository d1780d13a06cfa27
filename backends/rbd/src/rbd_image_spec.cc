// Parsing and printing of RBD image specs.
#include "blkclone/rbd_image_spec.hpp"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace blkclone {

absl::StatusOr<RbdImageSpec> RbdImageSpec::Parse(absl::string_view text) {
  const auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RBD image '", text, "': ", why, " (expected POOL/[NAMESPACE/]IMAGE[@SNAPSHOT])"));
  };
  RbdImageSpec spec;
  absl::string_view path = text;
  if (const size_t at = text.find('@'); at != absl::string_view::npos) {
    path = text.substr(0, at);
    spec.snapshot = std::string(text.substr(at + 1));
    if (spec.snapshot.empty()) return invalid("empty snapshot name");
    if (spec.snapshot.find('@') != std::string::npos) return invalid("more than one '@'");
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  if (parts.size() < 2) return invalid("no pool");
  if (parts.size() > 3) return invalid("too many '/'");
  for (absl::string_view part : parts) {
    if (part.empty()) return invalid("an empty pool, namespace or image name");
  }
  spec.pool = std::string(parts.front());
  spec.image = std::string(parts.back());
  if (parts.size() == 3) spec.name_space = std::string(parts[1]);
  return spec;
}

std::string RbdImageSpec::ToString() const {
  return absl::StrCat(pool, "/", name_space, name_space.empty() ? "" : "/", image,
                      snapshot.empty() ? "" : "@", snapshot);
}

}  // namespace blkclone

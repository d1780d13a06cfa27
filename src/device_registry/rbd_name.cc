// Parsing and printing of rbd: names.
#include "blkclone/rbd_name.hpp"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace blkclone {
namespace {
constexpr absl::string_view kPrefix = "rbd:";
}  // namespace

bool IsRbdName(absl::string_view path) { return absl::StartsWith(path, kPrefix); }

absl::StatusOr<RbdName> RbdName::Parse(absl::string_view text) {
  const auto invalid = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        text, ": ", why, " (expected rbd:POOL/[NAMESPACE/]IMAGE[@SNAPSHOT][:conf=PATH][:id=ID])"));
  };
  if (!IsRbdName(text)) return invalid("not an rbd: name");
  const std::vector<absl::string_view> parts = absl::StrSplit(text.substr(kPrefix.size()), ':');
  RbdName name{.image = std::string(parts[0])};
  if (name.image.empty()) return invalid("no image");
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::pair<absl::string_view, absl::string_view> option =
        absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    std::string* value = option.first == "conf" ? &name.ceph_conf
                         : option.first == "id" ? &name.client_id
                                                : nullptr;
    if (value == nullptr) return invalid(absl::StrCat("unknown option '", option.first, "'"));
    if (option.second.empty()) return invalid(absl::StrCat("empty ", option.first));
    *value = std::string(option.second);
  }
  return name;
}

std::string RbdName::ToString() const {
  return absl::StrCat(kPrefix, image, ceph_conf.empty() ? "" : ":conf=", ceph_conf,
                      client_id.empty() ? "" : ":id=", client_id);
}

}  // namespace blkclone

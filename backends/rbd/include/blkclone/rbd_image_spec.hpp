// RbdImageSpec: which RBD image a device opens, written as the rbd tool
// writes it: POOL/IMAGE, POOL/NAMESPACE/IMAGE, each with an optional @SNAPSHOT.
//
//   BLKCLONE_ASSIGN_OR_RETURN(blkclone::RbdImageSpec spec,
//                             blkclone::RbdImageSpec::Parse("rbd/golden@v2"));
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blkclone {

struct RbdImageSpec {
  std::string pool = "";
  std::string name_space = "";  // empty: the pool's default namespace
  std::string image = "";
  std::string snapshot = "";  // empty: the image itself, writable

  // kInvalidArgument, naming the spec, for an empty part, a missing pool or
  // more than three parts.
  static absl::StatusOr<RbdImageSpec> Parse(absl::string_view text);
  // The spec as Parse takes it.
  std::string ToString() const;

  bool operator==(const RbdImageSpec&) const = default;
};

}  // namespace blkclone

// RBD images on the command line, in qemu's syntax:
// rbd:POOL/[NAMESPACE/]IMAGE[@SNAPSHOT][:conf=PATH][:id=CLIENT].
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blkclone {

struct RbdName {
  std::string image = "";      // POOL/[NAMESPACE/]IMAGE[@SNAPSHOT], checked when opened
  std::string ceph_conf = "";  // empty: librados's search ($CEPH_CONF, /etc/ceph/ceph.conf)
  std::string client_id = "";  // empty: admin

  // kInvalidArgument, naming `text`, for an empty image or an unknown option.
  static absl::StatusOr<RbdName> Parse(absl::string_view text);
  std::string ToString() const;
};

// Whether `path` starts with "rbd:".
bool IsRbdName(absl::string_view path);

}  // namespace blkclone

// Device opening for the CLI: --backend, --ceph-conf, and errors that name the device.
#include "devices.hpp"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "blkclone/rbd_name.hpp"
#include "blkclone/status.hpp"

namespace blkclone::cli {

absl::StatusOr<Backend> BackendFromArgs(const ParsedArgs& args) {
  absl::StatusOr<Backend> backend = BackendByName(args.Get("--backend").value_or("file"));
  if (backend.ok()) return backend;
  return absl::InvalidArgumentError(absl::StrCat("--", backend.status().message()));
}

absl::Status ApplyCephConf(const ParsedArgs& args, std::span<std::string* const> paths) {
  const std::optional<std::string> conf = args.Get("--ceph-conf");
  if (!conf) return absl::OkStatus();
  bool applied = false;
  for (std::string* path : paths) {
    if (!IsRbdName(*path)) continue;
    BLKCLONE_ASSIGN_OR_RETURN(RbdName name, RbdName::Parse(*path));
    if (name.ceph_conf.empty())
      name.ceph_conf = std::filesystem::absolute(*conf).lexically_normal().string();
    *path = name.ToString();
    applied = true;
  }
  if (!applied)
    return absl::InvalidArgumentError(
        absl::StrCat("--ceph-conf ", *conf, ": no device is an RBD image (rbd:POOL/IMAGE)"));
  return absl::OkStatus();
}

absl::StatusOr<AnyBlockDevice> OpenDevice(absl::string_view role, const std::string& path,
                                          Backend backend, Access access) {
  absl::StatusOr<AnyBlockDevice> device = OpenDeviceByName(
      path, {.backend = backend, .read_only = access == Access::kReadOnly});
  if (device.ok()) return device;
  return absl::Status(device.status().code(),
                      absl::StrCat(role, ": ", device.status().message()));
}

}  // namespace blkclone::cli

// Device opening for the CLI: the backend chosen, or the remote one a name calls for.
#include "devices.hpp"

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "blkclone/file_device.hpp"
#include "blkclone/status.hpp"
#ifdef BLKCLONE_HAVE_DIRECT
#include "blkclone/direct_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_URING
#include "blkclone/uring_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_NBD
#include "blkclone/nbd_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_RBD
#include "blkclone/rbd_device.hpp"
#endif
#include "rbd_name.hpp"

namespace blkclone::cli {
namespace {

constexpr std::pair<absl::string_view, Backend> kBackends[] = {
    {"file", Backend::kFile},
#ifdef BLKCLONE_HAVE_DIRECT
    {"direct", Backend::kDirect},
#endif
#ifdef BLKCLONE_HAVE_URING
    {"uring", Backend::kUring},
#endif
};

// `value`, or its error with the role in front.
template <class T>
absl::StatusOr<T> WithRole(absl::string_view role, absl::StatusOr<T> value) {
  if (value.ok()) return value;
  return absl::Status(value.status().code(), absl::StrCat(role, ": ", value.status().message()));
}

// The device `open` made, or its error with the role in front.
template <class Device>
absl::StatusOr<AnyBlockDevice> Wrap(absl::string_view role,
                                    absl::StatusOr<std::unique_ptr<Device>> device) {
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Device> opened, WithRole(role, std::move(device)));
  return AnyBlockDevice(std::move(opened));
}

}  // namespace

bool IsNbdUri(absl::string_view path) {
  for (absl::string_view scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"}) {
    if (absl::StartsWith(path, scheme)) return true;
  }
  return false;
}

absl::StatusOr<Backend> BackendFromArgs(const ParsedArgs& args) {
  const std::string name = args.Get("--backend").value_or("file");
  std::string available;
  for (const auto& [known, backend] : kBackends) {
    if (known == name) return backend;
    absl::StrAppend(&available, available.empty() ? "" : ", ", known);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--backend ", name, ": unknown or not built in (available: ", available, ")"));
}

// A remote source: read-only, whatever the backend chosen for local devices.
absl::StatusOr<AnyBlockDevice> OpenNbdSource(absl::string_view role, const std::string& uri,
                                             Access access) {
  if (access != Access::kReadOnly)
    return absl::InvalidArgumentError(
        absl::StrCat(role, " ", uri, ": an NBD URI can only name the (read-only) source"));
#ifdef BLKCLONE_HAVE_NBD
  return Wrap(role, NbdDevice::Open(uri, {}));
#else
  return absl::UnimplementedError(
      absl::StrCat(role, " ", uri, ": NBD sources need the nbd backend (libnbd), not built in"));
#endif
}

// An RBD image by rbd: name, whatever the backend chosen for local devices.
absl::StatusOr<AnyBlockDevice> OpenRbdImage(absl::string_view role, const std::string& path,
                                            Access access) {
  BLKCLONE_ASSIGN_OR_RETURN(const RbdName name, WithRole(role, RbdName::Parse(path)));
#ifdef BLKCLONE_HAVE_RBD
  BLKCLONE_ASSIGN_OR_RETURN(const RbdImageSpec spec,
                            WithRole(role, RbdImageSpec::Parse(name.image)));
  RbdOptions options{.writable = access == Access::kReadWrite, .ceph_conf = name.ceph_conf};
  if (!name.client_id.empty()) options.client_id = name.client_id;
  return Wrap(role, RbdDevice::Open(spec, options));
#else
  return absl::UnimplementedError(
      absl::StrCat(role, " ", path, ": RBD images need the rbd backend (librbd), not built in"));
#endif
}

bool IsRemoteName(absl::string_view path) { return IsNbdUri(path) || IsRbdName(path); }

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
  if (IsNbdUri(path)) return OpenNbdSource(role, path, access);
  if (IsRbdName(path)) return OpenRbdImage(role, path, access);
  const bool read_only = access == Access::kReadOnly;
  switch (backend) {
    case Backend::kFile:
      return Wrap(role, FileDevice::Open(path, {.read_only = read_only}));
#ifdef BLKCLONE_HAVE_DIRECT
    case Backend::kDirect:
      return Wrap(role, DirectDevice::Open(path, {.read_only = read_only}));
#endif
#ifdef BLKCLONE_HAVE_URING
    case Backend::kUring:
      return Wrap(role, UringDevice::Open(path, {.read_only = read_only}));
#endif
    default:
      return absl::UnimplementedError("--backend: not built in");
  }
}

}  // namespace blkclone::cli

// Device opening for the CLI: existence and kind checks, then the backend.
#include "devices.hpp"

#include <sys/stat.h>

#include <cerrno>
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

namespace blkclone::cli {
namespace {

// What identifies a file or block device, whatever path names it.
std::pair<dev_t, ino_t> Identity(const struct stat& st) {
  return S_ISBLK(st.st_mode) ? std::pair<dev_t, ino_t>{st.st_rdev, 0}
                             : std::pair<dev_t, ino_t>{st.st_dev, st.st_ino};
}

// The file behind `path`, which must exist and be a regular file or block device.
absl::StatusOr<struct stat> StatDevice(absl::string_view role, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat(role, " ", path, ": does not exist"));
    return ErrnoStatus(errno, absl::StrCat(role, " ", path, ": stat"));
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return absl::InvalidArgumentError(
        absl::StrCat(role, " ", path, ": neither a regular file nor a block device"));
  return st;
}

constexpr std::pair<absl::string_view, Backend> kBackends[] = {
    {"file", Backend::kFile},
#ifdef BLKCLONE_HAVE_DIRECT
    {"direct", Backend::kDirect},
#endif
#ifdef BLKCLONE_HAVE_URING
    {"uring", Backend::kUring},
#endif
};

// The device `open` made, or its error with the role in front.
template <class Device>
absl::StatusOr<AnyBlockDevice> Wrap(absl::string_view role,
                                    absl::StatusOr<std::unique_ptr<Device>> device) {
  if (!device.ok())
    return absl::Status(device.status().code(),
                        absl::StrCat(role, ": ", device.status().message()));
  return AnyBlockDevice(*std::move(device));
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

absl::StatusOr<AnyBlockDevice> OpenDevice(absl::string_view role, const std::string& path,
                                          Backend backend, Access access) {
  if (IsNbdUri(path)) return OpenNbdSource(role, path, access);
  BLKCLONE_RETURN_IF_ERROR(StatDevice(role, path).status());
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

absl::Status CheckDistinctDevices(const CloneTable& table) {
  const std::pair<absl::string_view, const std::string*> devices[] = {
      {"metadata device", &table.metadata_device},
      {"destination", &table.destination_device},
      {"source", &table.source_device}};
  std::pair<dev_t, ino_t> identities[3];
  for (int i = 0; i < 3; ++i) {
    if (IsNbdUri(*devices[i].second)) {
      if (i != 2)
        return absl::InvalidArgumentError(absl::StrCat(devices[i].first, " ", *devices[i].second,
                                                       ": an NBD URI can only name the source"));
      continue;  // remote: cannot be one of the local devices
    }
    BLKCLONE_ASSIGN_OR_RETURN(struct stat st, StatDevice(devices[i].first, *devices[i].second));
    identities[i] = Identity(st);
    for (int j = 0; j < i; ++j) {
      if (identities[j] == identities[i])
        return absl::InvalidArgumentError(absl::StrCat(devices[i].first, " ", *devices[i].second,
                                                       ": the same device as the ",
                                                       devices[j].first, " ", *devices[j].second));
    }
  }
  return absl::OkStatus();
}

}  // namespace blkclone::cli

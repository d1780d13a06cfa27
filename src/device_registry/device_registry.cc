// The backends built in, chosen by name or by the form of a device's name.
#include "blkclone/device_registry.hpp"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "blkclone/copy_file_range_copier.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/rbd_name.hpp"
#include "blkclone/status.hpp"
#ifdef BLKCLONE_HAVE_DIRECT
#include "blkclone/direct_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_URING
#include "blkclone/uring_copier.hpp"
#include "blkclone/uring_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_NBD
#include "blkclone/nbd_device.hpp"
#endif
#ifdef BLKCLONE_HAVE_RBD
#include "blkclone/rbd_device.hpp"
#endif

namespace blkclone {
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

template <class Device>
absl::StatusOr<AnyBlockDevice> Wrap(absl::StatusOr<std::unique_ptr<Device>> device) {
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Device> opened, std::move(device));
  return AnyBlockDevice(std::move(opened));
}

absl::StatusOr<AnyBlockDevice> OpenNbdExport(const std::string& uri, bool read_only) {
  if (!read_only)
    return absl::InvalidArgumentError(
        absl::StrCat(uri, ": an NBD URI can only name a read-only device (a source)"));
#ifdef BLKCLONE_HAVE_NBD
  return Wrap(NbdDevice::Open(uri, {}));
#else
  return absl::UnimplementedError(
      absl::StrCat(uri, ": NBD exports need the nbd backend (libnbd), not built in"));
#endif
}

absl::StatusOr<AnyBlockDevice> OpenRbdImage(const std::string& text, bool read_only) {
  BLKCLONE_ASSIGN_OR_RETURN(const RbdName name, RbdName::Parse(text));
#ifdef BLKCLONE_HAVE_RBD
  BLKCLONE_ASSIGN_OR_RETURN(const RbdImageSpec spec, RbdImageSpec::Parse(name.image));
  RbdOptions options{.writable = !read_only, .ceph_conf = name.ceph_conf};
  if (!name.client_id.empty()) options.client_id = name.client_id;
  return Wrap(RbdDevice::Open(spec, options));
#else
  (void)read_only;
  return absl::UnimplementedError(
      absl::StrCat(text, ": RBD images need the rbd backend (librbd), not built in"));
#endif
}

}  // namespace

std::vector<std::string> BuiltBackends() {
  std::vector<std::string> names;
  for (const auto& [name, backend] : kBackends) names.emplace_back(name);
  return names;
}

absl::StatusOr<Backend> BackendByName(absl::string_view name) {
  for (const auto& [known, backend] : kBackends) {
    if (known == name) return backend;
  }
  return absl::InvalidArgumentError(absl::StrCat("backend ", name,
                                                 ": unknown or not built in (available: ",
                                                 absl::StrJoin(BuiltBackends(), ", "), ")"));
}

bool IsNbdUri(absl::string_view name) {
  for (absl::string_view scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"}) {
    if (absl::StartsWith(name, scheme)) return true;
  }
  return false;
}

bool IsRemoteName(absl::string_view name) { return IsNbdUri(name) || IsRbdName(name); }

absl::StatusOr<AnyBlockDevice> OpenDeviceByName(const std::string& name,
                                                const DeviceOpenOptions& options) {
  if (IsNbdUri(name)) return OpenNbdExport(name, options.read_only);
  if (IsRbdName(name)) return OpenRbdImage(name, options.read_only);
  switch (options.backend) {
    case Backend::kFile:
      return Wrap(FileDevice::Open(name, {.read_only = options.read_only}));
#ifdef BLKCLONE_HAVE_DIRECT
    case Backend::kDirect:
#ifdef BLKCLONE_HAVE_URING
      // O_DIRECT through io_uring, so that the io_uring copier applies.
      return Wrap(UringDevice::Open(name, {.read_only = options.read_only, .direct = true}));
#else
      return Wrap(DirectDevice::Open(name, {.read_only = options.read_only}));
#endif
#endif
#ifdef BLKCLONE_HAVE_URING
    case Backend::kUring:
      return Wrap(UringDevice::Open(name, {.read_only = options.read_only}));
#endif
    default:
      return absl::UnimplementedError("backend not built in");
  }
}

AnyCopier FastestCopier(AnyBlockDevice& source, AnyBlockDevice& destination,
                        const BufferedCopierOptions& buffered,
                        std::function<void(const std::string& line)> log) {
#ifdef BLKCLONE_HAVE_URING
  if (UringDevice* from = source.As<UringDevice>(), *to = destination.As<UringDevice>();
      from != nullptr && to != nullptr) {
    absl::StatusOr<std::unique_ptr<UringCopier>> uring = UringCopier::Create(
        *from, *to,
        {.chunk_size = buffered.chunk_size,
         .max_in_flight = buffered.max_in_flight,
         .detect_zeroes = buffered.detect_zeroes});
    if (uring.ok()) return AnyCopier(*std::move(uring), "io_uring");
    if (log)
      log(absl::StrCat("the io_uring copier failed to start (", uring.status().message(),
                       "); copying through buffers"));
  }
#endif
  if (FileDevice* from = source.As<FileDevice>(), *to = destination.As<FileDevice>();
      from != nullptr && to != nullptr)
    return AnyCopier(
        std::make_unique<CopyFileRangeCopier>(
            *from, *to,
            CopyFileRangeCopier::Options{
                .fallback = buffered,
                .on_fallback = [log](const absl::Status& refusal) {
                  if (log)
                    log(absl::StrCat("the kernel refused copy_file_range (", refusal.message(),
                                     "); copying through buffers from now on"));
                }}),
        "copy_file_range");
  return AnyCopier(
      std::make_unique<BufferedCopier<AnyBlockDevice, AnyBlockDevice>>(source, destination,
                                                                       buffered),
      "buffered");
}

}  // namespace blkclone

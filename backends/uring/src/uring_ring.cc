// Ring set-up: io_uring_queue_init_params, opcode probe, file registration.
#include "blkclone/internal/uring_ring.hpp"

#include <sys/eventfd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

absl::Status RefusedStatus(int error, absl::string_view what) {
  switch (error) {
    case ENOSYS:
      return absl::UnimplementedError(
          absl::StrCat(what, ": the kernel does not provide io_uring (ENOSYS)"));
    case EPERM:
      return absl::PermissionDeniedError(absl::StrCat(
          what, ": io_uring is not permitted here (EPERM: sysctl kernel.io_uring_disabled, ",
          "seccomp or a container policy)"));
    default:
      return ErrnoStatus(error, absl::StrCat("io_uring_queue_init for ", what));
  }
}

absl::Status CheckOps(io_uring* ring, std::span<const int> ops, absl::string_view what) {
  std::unique_ptr<io_uring_probe, void (*)(io_uring_probe*)> probe(io_uring_get_probe_ring(ring),
                                                                   io_uring_free_probe);
  if (probe == nullptr)
    return absl::UnimplementedError(
        absl::StrCat(what, ": the kernel's io_uring cannot be probed (needs Linux 5.6)"));
  for (int op : ops) {
    if (!io_uring_opcode_supported(probe.get(), op))
      return absl::UnimplementedError(
          absl::StrCat(what, ": the kernel's io_uring lacks opcode ", op, " (needs Linux 5.6)"));
  }
  return absl::OkStatus();
}

}  // namespace

void Ring::Exit::operator()(io_uring* ring) const {
  io_uring_queue_exit(ring);
  delete ring;
}

absl::StatusOr<Ring> Ring::Create(unsigned entries, unsigned cq_entries,
                                  const std::vector<int>& files, std::span<const int> ops,
                                  absl::string_view what) {
  io_uring_params params = {};
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = cq_entries;
  auto raw = std::make_unique<io_uring>();
  if (int rc = io_uring_queue_init_params(entries, raw.get(), &params); rc < 0)
    return RefusedStatus(-rc, what);
  std::unique_ptr<io_uring, Exit> ring(raw.release());
  BLKCLONE_RETURN_IF_ERROR(CheckOps(ring.get(), ops, what));
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC));
  if (!wake) return ErrnoStatus(errno, absl::StrCat("eventfd for ", what));
  std::vector<int> registered = files;
  registered.push_back(wake.get());
  if (int rc = io_uring_register_files(ring.get(), registered.data(),
                                       static_cast<unsigned>(registered.size()));
      rc < 0)
    return ErrnoStatus(-rc, absl::StrCat("io_uring_register_files for ", what));
  return Ring(std::move(ring), std::move(wake), static_cast<int>(files.size()));
}

}  // namespace blkclone::internal

// Ring: an io_uring instance with its registered files and the eventfd that
// wakes the thread driving it; the part of io_uring set-up that UringDevice
// and UringCopier share, including what to say when the kernel refuses.
#pragma once

#include <liburing.h>

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/internal/unique_fd.hpp"

namespace blkclone::internal {

class Ring {
 public:
  // A ring with `entries` submission and `cq_entries` completion slots; `files`
  // become fixed files 0..n-1 and a new eventfd fixed file n. Fails unless the
  // kernel has every opcode in `ops`. A kernel that refuses io_uring gives
  // kUnimplemented (ENOSYS: too old or built without it) or kPermissionDenied
  // (EPERM: sysctl kernel.io_uring_disabled, seccomp, a container's policy);
  // `what` names the user in messages.
  static absl::StatusOr<Ring> Create(unsigned entries, unsigned cq_entries,
                                     const std::vector<int>& files, std::span<const int> ops,
                                     absl::string_view what);

  io_uring* get() const { return ring_.get(); }
  int wake_fd() const { return wake_.get(); }
  // The fixed-file index of the eventfd.
  int wake_index() const { return wake_index_; }

 private:
  struct Exit {
    void operator()(io_uring* ring) const;
  };
  Ring(std::unique_ptr<io_uring, Exit> ring, UniqueFd wake, int wake_index)
      : ring_(std::move(ring)), wake_(std::move(wake)), wake_index_(wake_index) {}

  std::unique_ptr<io_uring, Exit> ring_;
  UniqueFd wake_;
  int wake_index_;
};

}  // namespace blkclone::internal

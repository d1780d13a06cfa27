// ServeExports: the disks blkclone serve offers over its clone: an NBD server
// (--nbd, --nbd-name) and a file in a FUSE mount (--fuse), either or both.
//
//   BLKCLONE_ASSIGN_OR_RETURN(ServeExports exports, ServeExports::FromArgs(args));
//   ...                                       // open the session
//   BLKCLONE_RETURN_IF_ERROR(exports.Start(session->clone()));
//   ...                                       // until a signal or exports.Unmounted()
//   BLKCLONE_RETURN_IF_ERROR(exports.Stop());  // then close the session
//
// Threading: Unmounted may be called from any thread; the rest from one.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "args.hpp"
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
#include "blkclone/fuse_export.hpp"
#endif
#ifdef BLKCLONE_HAVE_NBD_SERVER
#include "blkclone/nbd_server.hpp"
#endif
#include "session.hpp"

namespace blkclone::cli {

class ServeExports {
 public:
  // Checks the options (an export this build lacks is kInvalidArgument);
  // starts nothing.
  static absl::StatusOr<ServeExports> FromArgs(const ParsedArgs& args);
  ServeExports(ServeExports&&) = default;
  ServeExports& operator=(ServeExports&&) = delete;
  // Stop()s, dropping its error.
  ~ServeExports();

  // Starts serving `clone`, which must outlive the exports.
  absl::Status Start(CliClone& clone);
  // What is served, for the startup line: "; NBD unix:/run/c.sock; FUSE /mnt/c/disk",
  // or "" when nothing is.
  std::string Describe() const;
  // True once the FUSE directory was unmounted from outside (umount DIR).
  bool Unmounted() const { return unmounted_ != nullptr && unmounted_->load(); }
  // Stops the FUSE export and unmounts it, and stops the NBD server after it
  // has answered the requests it received. Idempotent.
  absl::Status Stop();

 private:
  ServeExports() = default;

  // Only the exports this build has; the flags of the others are refused.
#ifdef BLKCLONE_HAVE_NBD_SERVER
  std::optional<NbdServerOptions> nbd_options_;
  std::unique_ptr<NbdServer> nbd_;
#endif
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
  std::string fuse_dir_;
  std::unique_ptr<FuseExport> fuse_;
  std::thread fuse_watcher_;  // waits until the FUSE export stops serving
#endif
  // Set by fuse_watcher_; on the heap so that moving the exports keeps it in place.
  std::unique_ptr<std::atomic<bool>> unmounted_;
};

}  // namespace blkclone::cli

// Starting and stopping the NBD and FUSE exports of blkclone serve.
#include "serve_exports.hpp"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::cli {
namespace {

[[maybe_unused]] absl::Status Missing(absl::string_view flag, absl::string_view library) {
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": this blkclone was built without ", library));
}

}  // namespace

absl::StatusOr<ServeExports> ServeExports::FromArgs(const ParsedArgs& args) {
  ServeExports exports;
  if (args.Has("--nbd")) {
#ifdef BLKCLONE_HAVE_NBD_SERVER
    BLKCLONE_ASSIGN_OR_RETURN(NbdListenAddress listen, ParseNbdListenAddress(*args.Get("--nbd")));
    exports.nbd_options_ = NbdServerOptions{.listen = std::move(listen),
                                            .export_name = args.Get("--nbd-name").value_or("")};
#else
    return Missing("--nbd", "the NBD server");
#endif
  } else if (args.Has("--nbd-name")) {
    return absl::InvalidArgumentError("--nbd-name: only with --nbd");
  }
  if (args.Has("--fuse")) {
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
    exports.fuse_dir_ = *args.Get("--fuse");
#else
    return Missing("--fuse", "FUSE support (libfuse3)");
#endif
  }
  return exports;
}

ServeExports::~ServeExports() { Stop().IgnoreError(); }

absl::Status ServeExports::Start(CliClone& clone) {
#ifdef BLKCLONE_HAVE_NBD_SERVER
  if (nbd_options_) {
    NbdServerOptions options = *nbd_options_;
    // blkclone:hydrated reads the clone's map; CACHE hydrates through the clone.
    options.describe_hydration = [&clone](uint64_t offset, uint64_t length) {
      std::vector<NbdHydrationRun> runs;
      for (const RangeState& state : clone.DescribeHydration(offset, length))
        runs.push_back(
            {.offset = state.offset, .length = state.length, .hydrated = state.hydrated});
      return runs;
    };
    options.hydrate_range = [&clone](uint64_t offset, uint64_t length) {
      return clone.HydrateRange(offset, length);
    };
    nbd_ = std::make_unique<NbdServer>(AnyBlockDevice::Borrow(clone), std::move(options));
    BLKCLONE_RETURN_IF_ERROR(nbd_->Start());
  }
#endif
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
  if (!fuse_dir_.empty()) {
    BLKCLONE_ASSIGN_OR_RETURN(fuse_, FuseExport::Mount(AnyBlockDevice::Borrow(clone), fuse_dir_));
    unmounted_ = std::make_unique<std::atomic<bool>>(false);
    fuse_watcher_ = std::thread([fuse = fuse_.get(), unmounted = unmounted_.get()] {
      fuse->Wait();
      unmounted->store(true);
    });
  }
#endif
  static_cast<void>(clone);  // unused in a build without exports
  return absl::OkStatus();
}

std::string ServeExports::Describe() const {
  std::string text;
#ifdef BLKCLONE_HAVE_NBD_SERVER
  if (nbd_) {
    absl::StrAppend(&text, "; NBD ", nbd_->address().ToString());
    if (!nbd_options_->export_name.empty()) {
      absl::StrAppend(&text, " (export ", nbd_options_->export_name, ")");
    }
  }
#endif
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
  if (fuse_) absl::StrAppend(&text, "; FUSE ", fuse_->file_path());
#endif
  return text;
}

absl::Status ServeExports::Stop() {
  absl::Status status;
#ifdef BLKCLONE_HAVE_FUSE_EXPORT
  if (fuse_) {
    fuse_->Stop();
    fuse_watcher_.join();
    status = fuse_->Unmount();
    fuse_.reset();
  }
#endif
#ifdef BLKCLONE_HAVE_NBD_SERVER
  if (nbd_) {
    nbd_->Stop();
    nbd_.reset();
  }
#endif
  return status;
}

}  // namespace blkclone::cli

// FuseExport: the session's life, from mount through the worker loop to unmount.
//
// libfuse's multithreaded loop runs on a thread of its own. Stopping it has a
// catch: fuse_session_exit only sets a flag, which the workers look at after
// their next request, so Stop also sends one (opening the root directory).
// Replies to requests still with the device go out through the session's
// /dev/fuse descriptor, which fuse_session_unmount closes: Unmount therefore
// waits for them first. clone_fd stays off for the same reason, as each
// worker's own descriptor is closed when the loop ends.
#include "blkclone/fuse_export.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/status.hpp"
#include "single_file_fs.hpp"

namespace blkclone {
namespace {

absl::Status CheckOptions(const FuseExportOptions& options) {
  const std::string& name = options.file_name;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("invalid file name \"", name, "\""));
  if (options.max_threads < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("max_threads must be at least 1, not ", options.max_threads));
  return absl::OkStatus();
}

}  // namespace

class FuseExport::Impl {
 public:
  Impl(AnyBlockDevice device, std::string mountpoint, FuseExportOptions options)
      : device_(std::move(device)),
        mountpoint_(std::move(mountpoint)),
        options_(std::move(options)),
        fs_(device_, {.file_name = options_.file_name,
                      .max_write = options_.max_write,
                      .max_background = options_.max_background}) {}

  ~Impl() { (void)Unmount(); }

  absl::Status Start() {
    struct stat attr;
    if (::stat(mountpoint_.c_str(), &attr) != 0) return ErrnoStatus(errno, "stat " + mountpoint_);
    if (!S_ISDIR(attr.st_mode))
      return absl::FailedPreconditionError(absl::StrCat(mountpoint_, " is not a directory"));
    std::string program = "blkclone";
    std::string dash_o = "-o";
    // default_permissions: the kernel checks the file's mode, which matters with allow_other.
    std::string mount_options = absl::StrCat("fsname=blkclone,subtype=blkclone,default_permissions",
                                             options_.allow_other ? ",allow_other" : "");
    char* argv[] = {program.data(), dash_o.data(), mount_options.data(), nullptr};
    fuse_args args = FUSE_ARGS_INIT(3, argv);
    session_ = fuse_session_new(&args, &internal::SingleFileFs::Operations(),
                                sizeof(fuse_lowlevel_ops), &fs_);
    fuse_opt_free_args(&args);
    if (session_ == nullptr)
      return absl::InternalError("fuse_session_new failed (libfuse said why on stderr)");
    if (fuse_session_mount(session_, mountpoint_.c_str()) != 0) {
      fuse_session_destroy(session_);
      session_ = nullptr;
      return absl::UnavailableError(
          absl::StrCat("cannot mount FUSE on ", mountpoint_,
                       " (is /dev/fuse there, and fusermount3 for non-root?)"));
    }
    loop_ = std::thread([this] { RunLoop(); });
    // The first access waits for the kernel's handshake with the loop and
    // proves that the file is served.
    if (::stat(file_path().c_str(), &attr) != 0) {
      absl::Status status = ErrnoStatus(errno, "stat " + file_path());
      (void)Unmount();
      return status;
    }
    return absl::OkStatus();
  }

  const std::string& mountpoint() const { return mountpoint_; }
  std::string file_path() const { return absl::StrCat(mountpoint_, "/", options_.file_name); }

  void Stop() {
    internal::MutexLock lock(mu_);
    if (stopping_ || loop_done_) return;
    stopping_ = true;
    fuse_session_exit(session_);
    // The request that makes a worker see the flag. Its opener may wait until
    // the unmount if the loop ends before reading it, hence its own thread.
    waker_ = std::thread([path = mountpoint_] {
      const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
    });
  }

  void Wait() {
    internal::MutexLock lock(mu_);
    loop_done_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return loop_done_; });
  }

  absl::Status Unmount() {
    if (session_ == nullptr) return unmount_status_;
    Stop();
    loop_.join();
    std::thread waker;
    int loop_result;
    {
      internal::MutexLock lock(mu_);
      waker = std::move(waker_);
      loop_result = loop_result_;
    }
    fs_.WaitIdle();
    // Detaches the mount and closes /dev/fuse: requests no worker read fail,
    // the waker's among them.
    fuse_session_unmount(session_);
    if (waker.joinable()) waker.join();
    fuse_session_destroy(session_);
    session_ = nullptr;
    if (loop_result < 0) unmount_status_ = ErrnoStatus(-loop_result, "FUSE session loop");
    return unmount_status_;
  }

 private:
  void RunLoop() {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, static_cast<unsigned>(options_.max_threads));
    const int result = fuse_session_loop_mt(session_, config);
    fuse_loop_cfg_destroy(config);
    internal::MutexLock lock(mu_);
    loop_done_ = true;
    loop_result_ = result;
    loop_done_cv_.SignalAll();
  }

  AnyBlockDevice device_;
  const std::string mountpoint_;
  const FuseExportOptions options_;
  internal::SingleFileFs fs_;
  // Set by Start and cleared by Unmount, on the thread that owns the export.
  fuse_session* session_ = nullptr;
  std::thread loop_;
  absl::Status unmount_status_;

  internal::Mutex mu_;
  internal::CondVar loop_done_cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool loop_done_ ABSL_GUARDED_BY(mu_) = false;
  int loop_result_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread waker_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<FuseExport>> FuseExport::Mount(AnyBlockDevice device,
                                                              const std::string& mountpoint,
                                                              FuseExportOptions options) {
  BLKCLONE_RETURN_IF_ERROR(CheckOptions(options));
  // The unmount must find the same directory whatever the working directory is then.
  std::error_code error;
  std::filesystem::path path = std::filesystem::absolute(mountpoint, error).lexically_normal();
  if (error) return ErrnoStatus(error.value(), "resolve " + mountpoint);
  if (!path.has_filename()) path = path.parent_path();  // a trailing '/'
  auto impl = std::make_unique<Impl>(std::move(device), path.string(), std::move(options));
  BLKCLONE_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<FuseExport>(new FuseExport(std::move(impl)));
}

FuseExport::FuseExport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseExport::~FuseExport() = default;

const std::string& FuseExport::mountpoint() const { return impl_->mountpoint(); }
std::string FuseExport::file_path() const { return impl_->file_path(); }
void FuseExport::Stop() { impl_->Stop(); }
void FuseExport::Wait() { impl_->Wait(); }
absl::Status FuseExport::Unmount() { return impl_->Unmount(); }

}  // namespace blkclone

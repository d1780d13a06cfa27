// SingleFileFs: the handlers of the one-file file system.
#include "single_file_fs.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

constexpr fuse_ino_t kFileInode = FUSE_ROOT_ID + 1;
// Nothing about the directory or the file's attributes ever changes, so the
// kernel may cache them for as long as it likes.
constexpr double kCacheSeconds = 24 * 60 * 60;

timespec Now() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return now;
}

}  // namespace

SingleFileFs::SingleFileFs(AnyBlockDevice& device, SingleFileOptions options)
    : device_(device),
      options_(std::move(options)),
      size_(device.info().size),
      mount_time_(Now()),
      io_(device) {}

const fuse_lowlevel_ops& SingleFileFs::Operations() {
  static const fuse_lowlevel_ops operations = [] {
    fuse_lowlevel_ops ops{};
    ops.init = &Init;
    ops.lookup = &Lookup;
    ops.getattr = &GetAttr;
    ops.setattr = &SetAttr;
    ops.readdir = &ReadDir;
    ops.open = &Open;
    ops.read = &Read;
    ops.write = &Write;
    ops.flush = &Flush;
    ops.fsync = &Fsync;
    ops.fallocate = &Fallocate;
    return ops;
  }();
  return operations;
}

void SingleFileFs::WaitIdle() {
  MutexLock lock(mu_);
  idle_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; });
}

SingleFileFs& SingleFileFs::Of(fuse_req_t request) {
  return *static_cast<SingleFileFs*>(fuse_req_userdata(request));
}

void SingleFileFs::Begin() {
  MutexLock lock(mu_);
  ++in_flight_;
}

void SingleFileFs::End() {
  MutexLock lock(mu_);
  if (--in_flight_ == 0) idle_cv_.SignalAll();
}

Done SingleFileFs::ReplyWhenDone(fuse_req_t request) {
  Begin();
  return [this, request](absl::Status status) {
    (void)fuse_reply_err(request, StatusToErrno(status));
    End();
  };
}

bool SingleFileFs::Attributes(fuse_ino_t inode, struct stat* attr) const {
  *attr = {};
  attr->st_ino = inode;
  attr->st_uid = ::geteuid();
  attr->st_gid = ::getegid();
  attr->st_atim = attr->st_mtim = attr->st_ctim = mount_time_;
  if (inode == FUSE_ROOT_ID) {
    attr->st_mode = S_IFDIR | 0755;
    attr->st_nlink = 2;
    return true;
  }
  if (inode != kFileInode) return false;
  // The device may hold anything; only its owner may look at it.
  attr->st_mode = S_IFREG | (device_.info().caps.read_only ? 0400 : 0600);
  attr->st_nlink = 1;
  attr->st_size = static_cast<off_t>(size_);
  attr->st_blocks = static_cast<blkcnt_t>((size_ + 511) / 512);
  attr->st_blksize = std::max<blksize_t>(4096, device_.info().logical_block_size);
  return true;
}

void SingleFileFs::Init(void* userdata, fuse_conn_info* connection) {
  const SingleFileOptions& options = static_cast<SingleFileFs*>(userdata)->options_;
  connection->max_write = options.max_write;
  connection->max_background = options.max_background;
  connection->congestion_threshold = options.max_background * 3 / 4;
  // Lets the kernel keep the pieces of a large or asynchronous direct I/O (a
  // loop device's) in flight together instead of one by one.
  if (connection->capable & FUSE_CAP_ASYNC_DIO) connection->want |= FUSE_CAP_ASYNC_DIO;
}

void SingleFileFs::Lookup(fuse_req_t request, fuse_ino_t parent, const char* name) {
  SingleFileFs& fs = Of(request);
  if (parent != FUSE_ROOT_ID || fs.options_.file_name != name)
    return (void)fuse_reply_err(request, ENOENT);
  fuse_entry_param entry{};
  entry.ino = kFileInode;
  entry.generation = 1;
  fs.Attributes(kFileInode, &entry.attr);
  entry.attr_timeout = kCacheSeconds;
  entry.entry_timeout = kCacheSeconds;
  (void)fuse_reply_entry(request, &entry);
}

void SingleFileFs::GetAttr(fuse_req_t request, fuse_ino_t inode, fuse_file_info*) {
  struct stat attr;
  if (!Of(request).Attributes(inode, &attr)) return (void)fuse_reply_err(request, ENOENT);
  (void)fuse_reply_attr(request, &attr, kCacheSeconds);
}

void SingleFileFs::SetAttr(fuse_req_t request, fuse_ino_t inode, struct stat* attr, int to_set,
                           fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  // The size is the device's. Ownership and mode are fixed; times are not
  // kept, so setting them succeeds and changes nothing.
  const bool resize =
      (to_set & FUSE_SET_ATTR_SIZE) != 0 && static_cast<uint64_t>(attr->st_size) != fs.size_;
  if (inode != kFileInode || resize ||
      (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) != 0)
    return (void)fuse_reply_err(request, EPERM);
  struct stat current;
  fs.Attributes(inode, &current);
  (void)fuse_reply_attr(request, &current, kCacheSeconds);
}

void SingleFileFs::ReadDir(fuse_req_t request, fuse_ino_t inode, size_t size, off_t offset,
                           fuse_file_info*) {
  if (inode != FUSE_ROOT_ID) return (void)fuse_reply_err(request, ENOTDIR);
  const SingleFileFs& fs = Of(request);
  struct Entry {
    const char* name;
    fuse_ino_t inode;
    mode_t type;
  };
  const Entry entries[] = {{".", FUSE_ROOT_ID, S_IFDIR},
                           {"..", FUSE_ROOT_ID, S_IFDIR},
                           {fs.options_.file_name.c_str(), kFileInode, S_IFREG}};
  std::vector<char> buffer(size);
  size_t used = 0;
  // An entry's offset is the index of the next one, where a later call resumes.
  for (size_t i = static_cast<size_t>(std::max<off_t>(offset, 0)); i < std::size(entries); ++i) {
    struct stat attr {};
    attr.st_ino = entries[i].inode;
    attr.st_mode = entries[i].type;
    const size_t needed = fuse_add_direntry(request, buffer.data() + used, size - used,
                                            entries[i].name, &attr, static_cast<off_t>(i + 1));
    if (needed > size - used) break;
    used += needed;
  }
  (void)fuse_reply_buf(request, buffer.data(), used);
}

void SingleFileFs::Open(fuse_req_t request, fuse_ino_t inode, fuse_file_info* file) {
  const SingleFileFs& fs = Of(request);
  if (inode != kFileInode)
    return (void)fuse_reply_err(request, inode == FUSE_ROOT_ID ? EISDIR : ENOENT);
  if ((file->flags & O_ACCMODE) != O_RDONLY && fs.device_.info().caps.read_only)
    return (void)fuse_reply_err(request, EROFS);
  if ((file->flags & O_TRUNC) != 0 && fs.size_ != 0) return (void)fuse_reply_err(request, EPERM);
  // Every read and write reaches the handlers, and so the device: the page
  // cache would otherwise answer reads from its copy, hold writes back until
  // writeback, and cache a second time under a loop device that caches itself.
  file->direct_io = 1;
  file->keep_cache = 0;
  (void)fuse_reply_open(request, file);
}

void SingleFileFs::Read(fuse_req_t request, fuse_ino_t, size_t size, off_t offset,
                        fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  if (offset < 0) return (void)fuse_reply_err(request, EINVAL);
  const auto start = static_cast<uint64_t>(offset);
  if (start >= fs.size_ || size == 0) return (void)fuse_reply_buf(request, nullptr, 0);
  fs.Begin();
  fs.io_.Read(start, std::min<uint64_t>(size, fs.size_ - start),
              [&fs, request](absl::Status status, std::span<const std::byte> bytes) {
                if (status.ok()) {
                  (void)fuse_reply_buf(request, reinterpret_cast<const char*>(bytes.data()),
                                       bytes.size());
                } else {
                  (void)fuse_reply_err(request, StatusToErrno(status));
                }
                fs.End();
              });
}

void SingleFileFs::Write(fuse_req_t request, fuse_ino_t, const char* buffer, size_t size,
                         off_t offset, fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  if (offset < 0) return (void)fuse_reply_err(request, EINVAL);
  const auto start = static_cast<uint64_t>(offset);
  if (size == 0) return (void)fuse_reply_write(request, 0);
  // As on a block device: a write across the end is cut short, one at the end has no space.
  if (start >= fs.size_) return (void)fuse_reply_err(request, ENOSPC);
  const uint64_t length = std::min<uint64_t>(size, fs.size_ - start);
  fs.Begin();
  fs.io_.Write(start, {reinterpret_cast<const std::byte*>(buffer), length},
               [&fs, request, length](absl::Status status) {
                 if (status.ok()) {
                   (void)fuse_reply_write(request, length);
                 } else {
                   (void)fuse_reply_err(request, StatusToErrno(status));
                 }
                 fs.End();
               });
}

void SingleFileFs::Flush(fuse_req_t request, fuse_ino_t, fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  fs.io_.Flush(fs.ReplyWhenDone(request));
}

void SingleFileFs::Fsync(fuse_req_t request, fuse_ino_t, int, fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  fs.io_.Flush(fs.ReplyWhenDone(request));
}

void SingleFileFs::Fallocate(fuse_req_t request, fuse_ino_t, int mode, off_t offset, off_t length,
                             fuse_file_info*) {
  SingleFileFs& fs = Of(request);
  const bool punch_hole = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  const bool zero_range = (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
  if (!punch_hole && !zero_range) return (void)fuse_reply_err(request, EOPNOTSUPP);
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(request, EINVAL);
  const auto start = static_cast<uint64_t>(offset);
  uint64_t end = start + static_cast<uint64_t>(length);
  if (end > fs.size_) {
    if ((mode & FALLOC_FL_KEEP_SIZE) == 0) return (void)fuse_reply_err(request, EFBIG);
    end = fs.size_;
  }
  if (start >= end) return (void)fuse_reply_err(request, 0);
  if (punch_hole) return fs.io_.PunchHole(start, end - start, fs.ReplyWhenDone(request));
  fs.io_.ZeroRange(start, end - start, fs.ReplyWhenDone(request));
}

}  // namespace blkclone::internal

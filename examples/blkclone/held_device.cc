// Held devices: the path checked and identified through one open descriptor,
// the claim taken on it, then the backend's own open of the same path.
#include "held_device.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "blkclone/status.hpp"
#include "busy_grace.hpp"
#include "blkclone/rbd_name.hpp"

namespace blkclone::cli {
namespace {

using internal::UniqueFd;

// A local device open for identification and claiming, not for I/O; no
// descriptor when a block device was busy.
struct LocalFile {
  UniqueFd fd;
  struct stat st {};
  bool busy() const { return !fd; }
};

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_rdev == b.st_rdev;
}

// `path` opened read-only (and, for an exclusive block device, with O_EXCL);
// kNotFound when it is missing, kInvalidArgument when it is neither a regular
// file nor a block device; a busy() LocalFile while a block device is busy
// (EBUSY).
absl::StatusOr<LocalFile> OpenLocal(absl::string_view role, const std::string& path,
                                                   bool exclusive_block) {
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (exclusive_block ? O_EXCL : 0);
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat(role, " ", path, ": does not exist"));
    if (errno == EBUSY && exclusive_block) return LocalFile{};
    return ErrnoStatus(errno, absl::StrCat(role, " ", path));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return ErrnoStatus(errno, absl::StrCat(role, " ", path, ": fstat"));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return absl::InvalidArgumentError(
        absl::StrCat(role, " ", path, ": neither a regular file nor a block device"));
  return LocalFile{std::move(fd), st};
}

// The command line of process `pid` up to its first option, from /proc:
// "blkclone serve c".
std::string CommandLine(absl::string_view pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
  std::ostringstream content;
  content << in.rdbuf();
  std::vector<std::string> words = absl::StrSplit(content.str(), '\0', absl::SkipEmpty());
  const auto option = std::find_if(words.begin(), words.end(),
                                   [](const std::string& word) { return word[0] == '-'; });
  words.erase(option, words.end());
  if (words.empty()) return "";
  words[0] = words[0].substr(words[0].rfind('/') + 1);
  return absl::StrJoin(words, " ");
}

// Who holds an flock on the file `st` describes, as /proc/locks tells:
// "blkclone serve c (pid 12)"; empty when it does not say.
std::string FlockHolder(const struct stat& st) {
  const std::string file = absl::StrFormat("%02x:%02x:%u", major(st.st_dev), minor(st.st_dev),
                                           static_cast<uint64_t>(st.st_ino));
  std::ifstream locks("/proc/locks");
  for (std::string line; std::getline(locks, line);) {
    // "1: FLOCK  ADVISORY  WRITE 27625 fe:00:10961235 0 EOF"; waiters have "->" second.
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() < 6 || words[1] != "FLOCK" || words[5] != file) continue;
    const std::string command = CommandLine(words[4]);
    return absl::StrCat(command.empty() ? "process" : command, " (pid ", words[4], ")");
  }
  return "";
}

// The error for a claim that another keeps past the grace second.
absl::Status InUse(absl::string_view role, const std::string& path, const struct stat& st) {
  std::string holder = FlockHolder(st);
  if (holder.empty())
    holder =
        S_ISBLK(st.st_mode) ? "another program (mounted, or open exclusively)" : "another process";
  return absl::UnavailableError(absl::StrCat(role, " ", path, ": in use by ", holder));
}

// `path` opened and, when `hold` is exclusive, claimed.
absl::StatusOr<LocalFile> ClaimLocal(absl::string_view role, const std::string& path, Hold hold) {
  BusyGrace grace;
  for (;;) {
    BLKCLONE_ASSIGN_OR_RETURN(LocalFile file, OpenLocal(role, path, false));
    if (hold == Hold::kShared) return file;
    const struct stat st = file.st;
    if (S_ISBLK(st.st_mode)) {
      // A block device's claim is a second descriptor, opened with O_EXCL.
      BLKCLONE_ASSIGN_OR_RETURN(file, OpenLocal(role, path, true));
      if (!file.busy() && !SameFile(file.st, st))
        return absl::UnavailableError(
            absl::StrCat(role, " ", path, ": changed while being opened"));
    }
    if (!file.busy() && ::flock(file.fd.get(), LOCK_EX | LOCK_NB) == 0) return file;
    if (!file.busy() && errno != EWOULDBLOCK)
      return ErrnoStatus(errno, absl::StrCat(role, " ", path, ": flock"));
    if (!grace.Wait()) return InUse(role, path, st);
  }
}

// What tells `path`'s device apart for CheckDistinctDevices: an rbd: name by
// cluster and image, whatever its client id.
absl::StatusOr<DeviceIdentity> DistinctIdentity(absl::string_view role, const std::string& path) {
  if (IsNbdUri(path)) return DeviceIdentity::OfRemote(path);
  if (IsRbdName(path)) {
    absl::StatusOr<RbdName> name = RbdName::Parse(path);
    if (!name.ok())
      return absl::Status(name.status().code(), absl::StrCat(role, ": ", name.status().message()));
    return DeviceIdentity::OfRemote(absl::StrCat("rbd ", name->ceph_conf, " ", name->image));
  }
  BLKCLONE_ASSIGN_OR_RETURN(LocalFile file, OpenLocal(role, path, false));
  return DeviceIdentity::Of(file.fd.get(), file.st);
}

}  // namespace

absl::StatusOr<HeldDevice> OpenHeld(absl::string_view role, const std::string& path,
                                    Backend backend, Access access, Hold hold) {
  if (IsRemoteName(path)) {
    BLKCLONE_ASSIGN_OR_RETURN(AnyBlockDevice device, OpenDevice(role, path, backend, access));
    return HeldDevice{std::move(device), DeviceIdentity::OfRemote(path), UniqueFd()};
  }
  BLKCLONE_ASSIGN_OR_RETURN(LocalFile file, ClaimLocal(role, path, hold));
  BLKCLONE_ASSIGN_OR_RETURN(AnyBlockDevice device, OpenDevice(role, path, backend, access));
  // The backend opened the path again, which must still name what was claimed.
  struct stat now;
  if (::stat(path.c_str(), &now) != 0 || !SameFile(now, file.st))
    return absl::UnavailableError(absl::StrCat(role, " ", path, ": changed while being opened"));
  DeviceIdentity identity = DeviceIdentity::Of(file.fd.get(), file.st);
  return HeldDevice{std::move(device), std::move(identity),
                    hold == Hold::kExclusive ? std::move(file.fd) : UniqueFd()};
}

absl::Status CheckDistinctDevices(const CloneTable& table) {
  const std::pair<absl::string_view, const std::string*> devices[] = {
      {"metadata device", &table.metadata_device},
      {"destination", &table.destination_device},
      {"source", &table.source_device}};
  DeviceIdentity identities[3];
  for (int i = 0; i < 3; ++i) {
    const auto [role, path] = devices[i];
    if (IsNbdUri(*path) && i != 2)
      return absl::InvalidArgumentError(
          absl::StrCat(role, " ", *path, ": an NBD URI can only name the source"));
    BLKCLONE_ASSIGN_OR_RETURN(identities[i], DistinctIdentity(role, *path));
    for (int j = 0; j < i; ++j) {
      if (identities[j] == identities[i])
        return absl::InvalidArgumentError(absl::StrCat(role, " ", *path,
                                                       ": the same device as the ",
                                                       devices[j].first, " ", *devices[j].second));
    }
  }
  return absl::OkStatus();
}

}  // namespace blkclone::cli

// State directory records and the per-clone lock.
#include "state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "busy_grace.hpp"

namespace blkclone::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultStateDir = "/var/lib/blkclone";

std::optional<std::string> ReadSmallFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// Writes `path` through a temporary file and a rename, so that readers see the
// old content or the new, and syncs it so that a record outlives a crash.
absl::Status WriteFileAtomically(const fs::path& path, absl::string_view content) {
  const std::string temporary = path.string() + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", temporary));
  const ssize_t written = ::write(fd, content.data(), content.size());
  const int error = errno;
  const bool ok = written == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return ErrnoStatus(written < 0 ? error : EIO, absl::StrCat("write ", temporary));
  if (::rename(temporary.c_str(), path.c_str()) != 0)
    return ErrnoStatus(errno, absl::StrCat("rename ", temporary));
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StateDir> StateDir::FromArgs(const ParsedArgs& args) {
  std::optional<std::string> dir = args.Get("--state-dir");
  if (!dir) {
    const char* env = std::getenv("BLKCLONE_STATE_DIR");
    dir = env != nullptr && *env != '\0' ? env : kDefaultStateDir;
  }
  fs::path path = fs::absolute(*dir).lexically_normal();
  std::error_code error;
  if (!fs::is_directory(path, error))
    return absl::InvalidArgumentError(
        absl::StrCat("state directory ", path.string(),
                     fs::exists(path, error) ? ": not a directory"
                                             : ": does not exist (make it with mkdir -p)"));
  return StateDir(std::move(path));
}

fs::path StateDir::File(absl::string_view name, absl::string_view extension) const {
  return path_ / absl::StrCat(name, ".", extension);
}

absl::StatusOr<CloneRecord> StateDir::Load(absl::string_view name) const {
  BLKCLONE_RETURN_IF_ERROR(CheckName(name));
  const fs::path table_path = File(name, "table");
  const std::optional<std::string> line = ReadSmallFile(table_path);
  if (!line)
    return absl::NotFoundError(absl::StrCat("clone ", name, ": unknown (no ", table_path.string(),
                                            "; see blkclone create)"));
  absl::StatusOr<CloneTable> table = ParseTable(*line);
  if (!table.ok() || !table->length_sectors)
    return absl::FailedPreconditionError(absl::StrCat(
        table_path.string(),
        ": not a recorded table: ", table.ok() ? "no length" : table.status().message()));
  const fs::path uuid_path = File(name, "uuid");
  const std::optional<std::string> uuid = ReadSmallFile(uuid_path);
  if (!uuid)
    return absl::FailedPreconditionError(
        absl::StrCat("clone ", name, ": ", uuid_path.string(), " is missing"));
  const fs::path devices_path = File(name, "devices");
  const std::optional<std::string> devices = ReadSmallFile(devices_path);
  if (!devices)
    return absl::FailedPreconditionError(absl::StrCat(
        "clone ", name, ": ", devices_path.string(),
        " is missing, so its devices cannot be told from others (clones created by an older "
        "blkclone lack it); remove ",
        File(name, "*").string(), " and create ", name,
        " again with the same devices, which takes over its metadata"));
  absl::StatusOr<CloneIdentities> identities = CloneIdentities::Parse(*devices);
  if (!identities.ok())
    return absl::FailedPreconditionError(
        absl::StrCat(devices_path.string(), ": ", identities.status().message()));
  return CloneRecord{.name = std::string(name),
                     .table = *std::move(table),
                     .uuid = std::string(absl::StripAsciiWhitespace(*uuid)),
                     .identities = *std::move(identities)};
}

absl::Status StateDir::CheckNew(absl::string_view name) const {
  if (fs::exists(File(name, "table")))
    return absl::AlreadyExistsError(
        absl::StrCat("clone ", name, ": already exists (", File(name, "table").string(), ")"));
  return absl::OkStatus();
}

absl::Status StateDir::Save(const CloneRecord& record) const {
  BLKCLONE_RETURN_IF_ERROR(WriteFileAtomically(File(record.name, "uuid"), record.uuid + "\n"));
  BLKCLONE_RETURN_IF_ERROR(
      WriteFileAtomically(File(record.name, "devices"), record.identities.Format()));
  return WriteFileAtomically(File(record.name, "table"), FormatTable(record.table) + "\n");
}

std::optional<std::string> StateDir::FindByUuid(absl::string_view uuid) const {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(path_, error)) {
    if (entry.path().extension() != ".uuid") continue;
    const std::optional<std::string> content = ReadSmallFile(entry.path());
    if (content && absl::StripAsciiWhitespace(*content) == uuid) return entry.path().stem();
  }
  return std::nullopt;
}

absl::Status CheckName(absl::string_view name) {
  auto invalid = [&name](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat("name ", name, ": ", problem));
  };
  if (name.empty()) return absl::InvalidArgumentError("name: empty");
  if (name.size() > 100) return invalid("longer than 100 characters");
  if (name[0] == '.' || name[0] == '-') return invalid("starts with '.' or '-'");
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-')
      return invalid("only letters, digits, '.', '_' and '-' are allowed");
  }
  return absl::OkStatus();
}

absl::StatusOr<CloneLock> CloneLock::Acquire(const StateDir& dir, absl::string_view name,
                                             absl::string_view command) {
  const fs::path path = dir.File(name, "lock");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path.string()));
  CloneLock lock(fd);
  BusyGrace grace;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return ErrnoStatus(errno, absl::StrCat("flock ", path.string()));
    if (grace.Wait()) continue;
    std::string holder(absl::StripAsciiWhitespace(ReadSmallFile(path).value_or("")));
    return absl::UnavailableError(absl::StrCat("clone ", name, ": in use by ",
                                               holder.empty() ? "another blkclone command" : holder,
                                               " (lock ", path.string(), ")"));
  }
  const std::string holder = absl::StrCat("blkclone ", command, " (pid ", ::getpid(), ")\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, holder.data(), holder.size(), 0) < 0)
    return ErrnoStatus(errno, absl::StrCat("write ", path.string()));
  return lock;
}

CloneLock::~CloneLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace blkclone::cli

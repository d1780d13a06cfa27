// TempDir: mkdtemp-based scratch directories.
#include "blkclone/testing/temp_dir.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::testing {

absl::StatusOr<TempDir> TempDir::Create(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/", prefix, ".XXXXXX");
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp " + pattern);
  return TempDir(std::filesystem::path(buffer.data()));
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

absl::StatusOr<std::string> TempDir::CreateFile(const std::string& name, uint64_t size) const {
  std::string file = (path_ / name).string();
  int fd = ::open(file.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "open " + file);
  int rc = ::ftruncate(fd, static_cast<off_t>(size));
  int saved = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(saved, "ftruncate " + file, 0, size);
  return file;
}

}  // namespace blkclone::testing

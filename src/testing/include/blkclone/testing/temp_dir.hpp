// TempDir: a scratch directory removed with everything in it on destruction,
// for tests and examples that need real files.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace blkclone::testing {

class TempDir {
 public:
  // Creates a fresh directory under $TMPDIR (or /tmp) whose name starts with `prefix`.
  static absl::StatusOr<TempDir> Create(const std::string& prefix = "blkclone");
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir();

  const std::filesystem::path& path() const { return path_; }
  // Creates (or truncates) `name` in the directory with `size` bytes of zeroes.
  absl::StatusOr<std::string> CreateFile(const std::string& name, uint64_t size) const;

 private:
  explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

}  // namespace blkclone::testing

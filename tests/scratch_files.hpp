// Scratch files for the tests of backends that open paths: a fixture that
// makes fresh zero-filled files in its own directory, and a file's bytes read
// without going through a device.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "blkclone/testing/temp_dir.hpp"
#include "gtest/gtest.h"

namespace blkclone::testing {

// The first `size` bytes of the file at `path`.
inline std::vector<std::byte> FileBytes(const std::string& path, size_t size) {
  std::vector<std::byte> bytes(size);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, bytes.data(), size, 0), static_cast<ssize_t>(size));
  ::close(fd);
  return bytes;
}

class ScratchFileTest : public ::testing::Test {
 protected:
  // A new file of `size` zero bytes in dir_.
  std::string NewFile(uint64_t size) {
    return *dir_.CreateFile("f" + std::to_string(files_++) + ".img", size);
  }

  TempDir dir_ = *TempDir::Create("scratch-file-test");
  int files_ = 0;
};

}  // namespace blkclone::testing

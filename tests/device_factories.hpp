// Conformance-suite factories for backends that open a path, shared by the
// backend tests: a regular file in a scratch directory, or a loop block device
// over one. An opener names the device type and opens a path:
//
//   struct OpenDirect {
//     using Device = DirectDevice;
//     static absl::StatusOr<std::unique_ptr<Device>> Open(const std::string& path) {
//       return DirectDevice::Open(path, {});
//     }
//   };
//   using Factories = ::testing::Types<PathFactory<OpenDirect>, LoopFactory<OpenDirect>>;
//
// Where the environment refuses the device (no O_DIRECT on the scratch file
// system, io_uring disabled, not root for losetup), Create returns nullptr and
// the suite skips, with the reason on stderr.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "gtest/gtest.h"

namespace blkclone::testing {

// The ways a kernel or file system refuses a backend (no O_DIRECT, io_uring
// missing or forbidden): tests skip on these instead of failing.
inline bool IsEnvironmentRefusal(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnimplemented ||
         status.code() == absl::StatusCode::kPermissionDenied;
}

// The opened device; nullptr with the reason on stderr when the environment
// refuses it, nullptr and a test failure for any other error.
template <class Device>
std::unique_ptr<Device> DeviceOrSkip(absl::StatusOr<std::unique_ptr<Device>> opened) {
  if (opened.ok()) return *std::move(opened);
  if (IsEnvironmentRefusal(opened.status())) {
    std::cerr << "skipping: " << opened.status() << "\n";
  } else {
    ADD_FAILURE() << opened.status();
  }
  return nullptr;
}

// A crash of a file-backed device is a close without flushing; the page cache
// keeps unflushed data, so the suite only checks that flushed data survives.
template <class Opener>
struct PathFactory {
  using Device = typename Opener::Device;
  static constexpr bool kCrashLosesUnflushed = false;
  std::unique_ptr<Device> Create(uint64_t size) {
    path = *dir.CreateFile("device.img", size);
    return DeviceOrSkip(Opener::Open(path));
  }
  std::unique_ptr<Device> Crash(std::unique_ptr<Device> device) {
    device.reset();
    return DeviceOrSkip(Opener::Open(path));
  }
  TempDir dir = *TempDir::Create("device-test");
  std::string path;
};

// A file attached to a free loop device, detached on destruction.
class LoopDevice {
 public:
  // nullopt, with the reason on stderr, where losetup cannot attach one (not
  // root, no loop driver).
  static std::optional<LoopDevice> Attach(const std::string& backing, uint32_t sector_size = 512) {
    if (::geteuid() != 0) {
      std::cerr << "skipping: loop devices need root\n";
      return std::nullopt;
    }
    std::string command = absl::StrCat("losetup --find --show --sector-size ", sector_size, " ",
                                       backing, " 2>/dev/null");
    FILE* pipe = ::popen(command.c_str(), "r");
    char line[256] = {};
    const bool attached = pipe != nullptr && std::fgets(line, sizeof line, pipe) != nullptr;
    if (pipe != nullptr) ::pclose(pipe);
    if (!attached) {
      std::cerr << "skipping: " << command << " failed\n";
      return std::nullopt;
    }
    std::string path = line;
    path.erase(path.find_last_not_of('\n') + 1);
    return LoopDevice(std::move(path));
  }
  LoopDevice(LoopDevice&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  LoopDevice& operator=(LoopDevice&& other) noexcept {
    std::swap(path_, other.path_);  // `other` detaches what this held
    return *this;
  }
  ~LoopDevice() {
    if (!path_.empty()) (void)std::system(("losetup -d " + path_).c_str());
  }
  const std::string& path() const { return path_; }

 private:
  explicit LoopDevice(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The device over a loop device (BLKGETSIZE64, BLKDISCARD, sector sizes, ...).
template <class Opener, uint32_t kSectorSize = 512>
struct LoopFactory {
  using Device = typename Opener::Device;
  static constexpr bool kCrashLosesUnflushed = false;
  std::unique_ptr<Device> Create(uint64_t size) {
    loop = LoopDevice::Attach(*dir.CreateFile("backing.img", size), kSectorSize);
    if (!loop.has_value()) return nullptr;
    return DeviceOrSkip(Opener::Open(loop->path()));
  }
  std::unique_ptr<Device> Crash(std::unique_ptr<Device> device) {
    device.reset();
    return DeviceOrSkip(Opener::Open(loop->path()));
  }
  TempDir dir = *TempDir::Create("loop-device-test");  // outlives the loop device
  std::optional<LoopDevice> loop;
};

}  // namespace blkclone::testing

// Declares `lhs` as the device `expr` (a StatusOr<unique_ptr<...>>) opened,
// skips the test when the environment refuses it, and fails on other errors.
#define BLKCLONE_ASSIGN_DEVICE_OR_SKIP(lhs, expr) \
  BLKCLONE_TESTING_ASSIGN_DEVICE_OR_SKIP(BLKCLONE_INTERNAL_CONCAT(opened_, __LINE__), lhs, expr)
#define BLKCLONE_TESTING_ASSIGN_DEVICE_OR_SKIP(opened, lhs, expr)                                  \
  auto opened = (expr);                                                                            \
  if (::blkclone::testing::IsEnvironmentRefusal(opened.status())) GTEST_SKIP() << opened.status(); \
  ASSERT_TRUE(opened.ok()) << opened.status();                                                     \
  lhs = *std::move(opened)

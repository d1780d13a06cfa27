// The device registry: devices opened by name through the backends built, and
// the fastest copier between two of them, with a session hydrating through it.
#include "blkclone/device_registry.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "blkclone/clone_session.hpp"
#include "blkclone/file_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "scratch_files.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using ::blkclone::testing::FileBytes;
using ::blkclone::testing::RandomBytes;
using ::testing::HasSubstr;

constexpr uint64_t kSize = 4 << 20;

class DeviceRegistryTest : public testing::ScratchFileTest {
 protected:
  // A file holding `bytes`.
  std::string FileWith(const std::vector<std::byte>& bytes) {
    const std::string path = NewFile(bytes.size());
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return path;
  }
  AnyBlockDevice Open(const std::string& path, Backend backend, bool read_only) {
    absl::StatusOr<AnyBlockDevice> device =
        OpenDeviceByName(path, {.backend = backend, .read_only = read_only});
    EXPECT_TRUE(device.ok()) << device.status();
    return *std::move(device);
  }
};

TEST_F(DeviceRegistryTest, NamesTheBackendsBuilt) {
  const std::vector<std::string> built = BuiltBackends();
  ASSERT_FALSE(built.empty());
  EXPECT_EQ(built.front(), "file");
  for (const std::string& name : built) EXPECT_TRUE(BackendByName(name).ok()) << name;
  const absl::StatusOr<Backend> unknown = BackendByName("tape");
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("backend tape: unknown or not built in"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("file"));
}

TEST_F(DeviceRegistryTest, RefusesWhatANameCannotBe) {
  const auto writable_nbd = OpenDeviceByName("nbd+unix:///x?socket=/nonexistent", {.read_only = false});
  ASSERT_EQ(writable_nbd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(writable_nbd.status().message(), HasSubstr("can only name a read-only device"));
  const auto bad_rbd = OpenDeviceByName("rbd:pool/image:colour=blue", {});
  ASSERT_EQ(bad_rbd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_rbd.status().message(), HasSubstr("unknown option 'colour'"));
  const auto missing = OpenDeviceByName((dir_.path() / "missing.img").string(), {});
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(IsRemoteName("rbd:pool/image"));
  EXPECT_TRUE(IsRemoteName("nbds://host/export"));
  EXPECT_FALSE(IsRemoteName("/dev/sda"));
}

TEST_F(DeviceRegistryTest, FilesOpenAsTheBackendAsked) {
  const std::string path = NewFile(kSize);
  AnyBlockDevice file = Open(path, Backend::kFile, true);
  EXPECT_NE(file.As<FileDevice>(), nullptr);
  EXPECT_EQ(file.As<MemoryDevice>(), nullptr);
}

// Each backend's pair of files gets its fastest copier, and a session copies
// through it to the byte.
TEST_F(DeviceRegistryTest, SessionsHydrateThroughTheFastestCopierOfEachBackend) {
  const std::vector<std::byte> data = RandomBytes(kSize, 5);
  const std::string source = FileWith(data);
  for (const std::string& name : BuiltBackends()) {
    SCOPED_TRACE(name);
    const Backend backend = *BackendByName(name);
    const std::string dest = NewFile(kSize), meta = NewFile(1 << 20);
    std::string chosen;
    auto session = CloneSession::Create(
        {Open(source, backend, true), Open(dest, backend, false), Open(meta, backend, false)},
        64 << 10,
        {.hydration = {.threshold = 8, .batch_size = 4},
         .copier = [&](AnyBlockDevice& from, AnyBlockDevice& to) {
           AnyCopier copier =
               FastestCopier(from, to, kSessionBufferedCopier, [](const std::string& line) {
                 ADD_FAILURE() << "a fallback: " << line;
               });
           chosen = copier.name();
           return copier;
         }});
    ASSERT_TRUE(session.ok()) << session.status();
    // direct is io_uring opened O_DIRECT where io_uring is built.
    const std::vector<std::string> built = BuiltBackends();
    const bool uring = std::find(built.begin(), built.end(), "uring") != built.end();
    const std::string expected = name == "file" ? "copy_file_range"
                                 : uring        ? "io_uring"
                                                : "buffered";
    EXPECT_EQ(chosen, expected);
    EXPECT_EQ((*session)->copier_name(), expected);
    ASSERT_TRUE((*session)->HydrateAll().ok());
    ASSERT_TRUE((*session)->Close().ok());
    EXPECT_EQ(FileBytes(dest, kSize), data);
  }
}

TEST_F(DeviceRegistryTest, DevicesOfDifferentKindsGetTheBufferedCopier) {
  const std::string path = NewFile(kSize);
  AnyBlockDevice file = Open(path, Backend::kFile, true);
  AnyBlockDevice memory(*MemoryDevice::Create({.size = kSize}));
  // A choice, not a fallback: nothing is logged.
  EXPECT_EQ(FastestCopier(file, memory, kSessionBufferedCopier,
                          [](const std::string& line) { ADD_FAILURE() << line; })
                .name(),
            "buffered");
}

}  // namespace
}  // namespace blkclone

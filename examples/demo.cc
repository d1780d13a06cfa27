// Demo: generates a source image, copies it region by region into a
// destination through the file backend, with a memory device holding the
// copied-region map, and checks the result byte for byte.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "blkclone/file_device.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"

namespace {

constexpr uint64_t kImageSize = 64 << 20;
constexpr uint64_t kRegionSize = 1 << 20;

absl::Status Run() {
  BLKCLONE_ASSIGN_OR_RETURN(auto dir, blkclone::testing::TempDir::Create("blkclone-demo"));
  BLKCLONE_ASSIGN_OR_RETURN(std::string source_path, dir.CreateFile("source.img", kImageSize));
  BLKCLONE_ASSIGN_OR_RETURN(std::string dest_path, dir.CreateFile("dest.img", kImageSize));
  std::printf("generating a %llu MiB source image in %s\n",
              static_cast<unsigned long long>(kImageSize >> 20), source_path.c_str());
  {
    BLKCLONE_ASSIGN_OR_RETURN(auto source, blkclone::FileDevice::Open(source_path, {}));
    std::vector<std::byte> chunk(kRegionSize);
    std::mt19937_64 rng(42);
    for (uint64_t offset = 0; offset < kImageSize; offset += kRegionSize) {
      for (auto& b : chunk) b = std::byte(rng());
      BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*source, offset, chunk));
    }
    BLKCLONE_RETURN_IF_ERROR(blkclone::Flush(*source));
  }
  BLKCLONE_ASSIGN_OR_RETURN(auto source,
                            blkclone::FileDevice::Open(source_path, {.read_only = true}));
  BLKCLONE_ASSIGN_OR_RETURN(auto dest, blkclone::FileDevice::Open(dest_path, {}));
  const uint64_t regions = kImageSize / kRegionSize;
  BLKCLONE_ASSIGN_OR_RETURN(auto map, blkclone::MemoryDevice::Create({.size = 512}));
  std::vector<std::byte> buffer(kRegionSize), marks(512);
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t r = 0; r < regions; ++r) {
    BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(*source, r * kRegionSize, buffer));
    BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*dest, r * kRegionSize, buffer));
    marks[r] = std::byte{1};
  }
  BLKCLONE_RETURN_IF_ERROR(blkclone::Flush(*dest));
  BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(*map, 0, marks, blkclone::kFua));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("copied %llu regions of %llu KiB in %.3f s, destination flushed, map recorded\n",
              static_cast<unsigned long long>(regions),
              static_cast<unsigned long long>(kRegionSize >> 10), seconds);
  std::vector<std::byte> other(kRegionSize);
  for (uint64_t r = 0; r < regions; ++r) {
    BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(*source, r * kRegionSize, buffer));
    BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(*dest, r * kRegionSize, other));
    if (std::memcmp(buffer.data(), other.data(), kRegionSize) != 0)
      return absl::DataLossError("destination differs from source");
  }
  std::printf("verified: destination equals source\n");
  return absl::OkStatus();
}

}  // namespace

int main() {
  absl::Status status = Run();
  if (!status.ok()) {
    std::fprintf(stderr, "demo failed: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

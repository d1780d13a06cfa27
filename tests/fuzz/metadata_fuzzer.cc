// libFuzzer target: arbitrary bytes as a metadata device, through Check, both
// dumps and PersistentMetadata::Open, read-only with the stored geometry and
// read-write with a fixed small one (which may format, upgrade format 1, record
// needs_check, repair or commit). Each input runs twice, as is and with every
// block's checksum made valid, since random bytes almost never pass a CRC32C
// and the decoding behind it would go untested. Besides memory errors it traps
// when the readers disagree: metadata that Check passes must open with the
// hydrated count Check found, and must still pass after a commit; and format 2
// metadata that Check passes without a note must keep that count with any one
// byte flipped (the one the input's CRC32C picks), as every committed version
// has two copies. The seeds hold both format versions.
//
//   cmake --preset fuzz && cmake --build --preset fuzz
//   build/fuzz/tests/metadata_fuzzer -max_total_time=60 tests/fuzz/corpus/metadata
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"

namespace blkclone {
namespace {

// The geometry of the seeds in tests/fuzz/corpus/metadata: 100 regions of 4 KiB.
constexpr CloneGeometry kGeometry{
    .source_size = 100 * 4096, .dest_size = 100 * 4096, .region_size = 4096, .region_count = 100};

void Require(bool condition) {
  if (!condition) __builtin_trap();
}

// Metadata that passes Check opens read-only and agrees with it.
void OpenReadOnly(MemoryDevice& device, const CheckReport& report) {
  auto meta = PersistentMetadata::Open(AnyBlockDevice::Borrow(device), report.header->geometry,
                                       {.read_only = true});
  Require(meta.ok());
  Require((*meta)->map().CountSet() == report.hydrated_regions);
}

// Metadata that passed Check still passes after a commit.
void OpenAndCommit(MemoryDevice& device, bool was_ok) {
  auto meta = PersistentMetadata::Open(AnyBlockDevice::Borrow(device), kGeometry);
  if (!meta.ok()) return;
  (*meta)->MarkHydrated(17, 40);
  (*meta)->Seal();
  if (!(*meta)->CommitSealed().ok()) return;
  AnyBlockDevice view = AnyBlockDevice::Borrow(device);
  Require(!was_ok || Check(view).ok);
}

// One damaged byte in clean format 2 metadata costs nothing committed.
void OpenWithOneByteFlipped(const std::vector<std::byte>& image, const CheckReport& report) {
  if (!report.ok || !report.notes.empty() || report.header->format_version < 2) return;
  const uint64_t used = std::min<uint64_t>(
      image.size(), internal::LayoutEnd(report.header->layout, report.header->format_version));
  std::vector<std::byte> damaged = image;
  damaged[internal::Crc32c(image) % used] ^= std::byte{0xff};
  auto device = *MemoryDevice::Create({.size = damaged.size()});
  device->Fill(0, damaged);
  auto meta = PersistentMetadata::Open(AnyBlockDevice::Borrow(*device), report.header->geometry);
  Require(meta.ok());
  Require((*meta)->map().CountSet() == report.hydrated_regions);
}

void Run(const std::vector<std::byte>& image) {
  auto device = *MemoryDevice::Create({.size = image.size()});
  device->Fill(0, image);
  AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
  const CheckReport report = Check(view);
  const bool text_ok = DumpText(view).ok();
  const bool json_ok = DumpJson(view).ok();
  Require(text_ok == json_ok);
  if (report.ok) {
    Require(json_ok);
    OpenReadOnly(*device, report);
    OpenWithOneByteFlipped(image, report);
  }
  OpenAndCommit(*device, report.ok);
}

// Stores a valid CRC32C in every block whose header is not blank.
void FixChecksums(std::vector<std::byte>& image) {
  for (size_t offset = 0; offset < image.size(); offset += kMetadataBlockSize) {
    const std::span<std::byte> block(image.data() + offset, kMetadataBlockSize);
    if (std::all_of(block.begin(), block.begin() + internal::kBitmapHeaderSize,
                    [](std::byte b) { return b == std::byte{0}; }))
      continue;
    const uint32_t crc = internal::Crc32c(block.subspan(4));
    for (int i = 0; i < 4; ++i) block[i] = static_cast<std::byte>(crc >> (8 * i));
  }
}

}  // namespace
}  // namespace blkclone

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using blkclone::kMetadataBlockSize;
  std::vector<std::byte> image((size + kMetadataBlockSize - 1) / kMetadataBlockSize *
                               kMetadataBlockSize);
  if (size != 0) std::memcpy(image.data(), data, size);
  blkclone::Run(image);
  blkclone::FixChecksums(image);
  blkclone::Run(image);
  return 0;
}

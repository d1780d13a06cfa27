// Shared by the PersistentMetadata tests: geometries, in-memory metadata
// devices, commits as the engine makes them, and the crash images of a log.
//
//   auto device = NewDevice(geometry);
//   auto meta = OpenOn(*device, geometry);
//   Commit(**meta, {{0, 3}});
//   ForEachCrashImage(initial, log, [&](const std::vector<std::byte>& image) { ... });
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/metadata_check.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "gtest/gtest.h"

namespace blkclone::testing {

inline constexpr uint64_t kR = internal::kRegionsPerBitmapBlock;

inline CloneGeometry GeometryOf(uint64_t regions, uint64_t region_size = 4096) {
  return CloneGeometry{.source_size = regions * region_size,
                       .dest_size = regions * region_size,
                       .region_size = region_size,
                       .region_count = regions};
}

inline std::unique_ptr<MemoryDevice> NewDevice(uint64_t size, bool simulate_crashes = false) {
  return *MemoryDevice::Create({.size = size, .simulate_crashes = simulate_crashes});
}

inline std::unique_ptr<MemoryDevice> NewDevice(const CloneGeometry& geometry,
                                               bool simulate_crashes = false) {
  return NewDevice(PersistentMetadata::RequiredSize(geometry), simulate_crashes);
}

inline std::unique_ptr<MemoryDevice> DeviceWith(const std::vector<std::byte>& image) {
  auto device = NewDevice(image.size());
  device->Fill(0, image);
  return device;
}

template <class D>
absl::StatusOr<std::unique_ptr<PersistentMetadata>> OpenOn(D& device, const CloneGeometry& geometry,
                                                           MetadataOpenOptions options = {.format_if_blank = true}) {
  return PersistentMetadata::Open(AnyBlockDevice::Borrow(device), geometry, options);
}

// The map's words: cheaper to compare than its bits.
inline std::vector<uint64_t> WordsOf(const RegionMap& map) {
  std::vector<uint64_t> words(map.size() / 64 + (map.size() % 64 != 0));
  for (uint64_t w = 0; w < words.size(); ++w) words[w] = map.Word(w);
  return words;
}

// Marks, seals and commits, as the engine does (the destination flush is moot here).
inline void Commit(PersistentMetadata& meta,
                   std::initializer_list<std::pair<uint64_t, uint64_t>> ranges) {
  for (auto [first, count] : ranges) meta.MarkHydrated(first, count);
  meta.Seal();
  ASSERT_TRUE(meta.CommitSealed().ok());
}

inline StoredHeader HeaderOf(MemoryDevice& device) {
  AnyBlockDevice view = AnyBlockDevice::Borrow(device);
  return *PersistentMetadata::ReadHeader(view);
}

// Check passes on `device`; else the first problem is shown.
inline void ExpectCheckPasses(MemoryDevice& device) {
  AnyBlockDevice view = AnyBlockDevice::Borrow(device);
  const CheckReport report = Check(view);
  EXPECT_TRUE(report.ok) << (report.problems.empty() ? "" : report.problems.front());
}

// A read-only open of `device` reads map words `words`.
inline void ExpectReopensWith(MemoryDevice& device, const CloneGeometry& geometry,
                              const std::vector<uint64_t>& words) {
  auto meta = OpenOn(device, geometry, {.read_only = true});
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(WordsOf((*meta)->map()), words);
}

// Calls `visit` with every image a crash during `log` (applied to `initial`) can
// leave: after each prefix, with every subset of the undetermined writes (64
// random ones when there are more than 8).
inline void ForEachCrashImage(const std::vector<std::byte>& initial, const WriteLog& log,
                              absl::FunctionRef<void(const std::vector<std::byte>&)> visit) {
  std::mt19937_64 rng(1);
  for (size_t n = 0; n <= log.size(); ++n) {
    const size_t k = CrashStateAfter(log, n).undetermined.size();
    const bool all = k <= 8;
    for (uint64_t mask = 0; mask < (all ? uint64_t{1} << k : 64); ++mask) {
      std::vector<bool> survivors(k);
      for (size_t i = 0; i < k; ++i) survivors[i] = all ? (mask >> i) & 1 : rng() & 1;
      SCOPED_TRACE(absl::StrCat("crash after ", n, " log entries"));
      visit(CrashImage(initial, log, n, survivors));
    }
  }
}

// Calls `visit` with every image a write of `log` torn at a 512-byte sector
// boundary leaves, the new sectors first or last, over what came before it.
inline void ForEachTornImage(const std::vector<std::byte>& initial, const WriteLog& log,
                             absl::FunctionRef<void(const std::vector<std::byte>&)> visit) {
  constexpr uint64_t kSector = 512;
  for (size_t k = 0; k < log.size(); ++k) {
    const LogEntry& entry = log[k];
    if (entry.op != Op::kWrite) continue;
    const std::vector<std::byte> old_image = ReplayUpTo(initial, log, k);
    for (uint64_t split = kSector; split < entry.length; split += kSector) {
      for (bool new_first : {true, false}) {
        SCOPED_TRACE(
            absl::StrCat("entry ", k, " split at ", split, new_first ? " new|old" : " old|new"));
        std::vector<std::byte> image = old_image;
        const uint64_t from = new_first ? 0 : split;
        const uint64_t to = new_first ? split : entry.length;
        std::memcpy(image.data() + entry.offset + from, entry.data.data() + from, to - from);
        visit(image);
      }
    }
  }
}

}  // namespace blkclone::testing

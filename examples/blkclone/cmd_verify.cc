// blkclone verify: compare the destination with the source over every region
// the committed metadata marks hydrated, and report the ranges that differ;
// source read errors are retried as background hydration retries them.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "clone_devices.hpp"
#include "commands.hpp"
#include "progress.hpp"

namespace blkclone::cli {
namespace {

constexpr uint64_t kChunk = 4 << 20;
constexpr size_t kMaxListed = 100;

struct Range {
  uint64_t begin, end;  // bytes, end exclusive
};

// Collects differing sectors into maximal ranges.
class Differences {
 public:
  void Add(uint64_t offset, uint64_t length) {
    if (!ranges_.empty() && ranges_.back().end == offset) {
      ranges_.back().end += length;
    } else {
      ranges_.push_back({offset, offset + length});
    }
    bytes_ += length;
  }
  const std::vector<Range>& ranges() const { return ranges_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<Range> ranges_;
  uint64_t bytes_ = 0;
};

// Reads the source as background hydration copies from it: a failure is
// retried after a delay that doubles from the first retry delay up to the
// largest, until as many failures in a row as hydration allows.
absl::Status ReadSource(const CloneRecord& record, AnyBlockDevice& source, uint64_t offset,
                        std::span<std::byte> buffer) {
  constexpr HydratorOptions kPolicy;
  std::chrono::milliseconds delay = kPolicy.first_retry_delay;
  for (uint32_t failures = 1;; ++failures) {
    const absl::Status status = ReadAt(source, offset, buffer);
    if (status.ok()) return status;
    if (failures == kPolicy.max_consecutive_failures)
      return absl::Status(
          status.code(), absl::StrCat("source ", record.table.source_device, ": ", status.message(),
                                      " (", failures, " failures in a row)"));
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, kPolicy.max_retry_delay);
  }
}

}  // namespace

absl::StatusOr<int> RunVerify(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "verify"));
  CloneDevices devices;
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, backend, Access::kReadOnly, CloneParts::kAll, devices));
  AnyBlockDevice& source = *devices.source;
  AnyBlockDevice& dest = *devices.destination;
  const RegionMap& map = devices.metadata->map();
  const CloneGeometry& geometry = devices.metadata->geometry();
  const uint64_t hydrated = map.CountSet();
  const uint64_t total = std::min(hydrated * geometry.region_size, geometry.source_size);
  const size_t alignment = std::max(source.info().memory_alignment, dest.info().memory_alignment);
  AlignedBuffer from_source(kChunk, alignment), from_dest(kChunk, alignment);
  Progress bar(absl::StrCat("verifying ", record.name));
  Differences differences;
  uint64_t compared = 0;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t first = map.FindNextSet(0); first < map.size();) {
    const uint64_t end_region = map.FindNextUnset(first);
    const uint64_t end = std::min(end_region * geometry.region_size, geometry.source_size);
    for (uint64_t offset = first * geometry.region_size; offset < end; offset += kChunk) {
      const uint64_t length = std::min(kChunk, end - offset);
      BLKCLONE_RETURN_IF_ERROR(
          ReadSource(record, source, offset, from_source.span().first(length)));
      BLKCLONE_RETURN_IF_ERROR(ReadAt(dest, offset, from_dest.span().first(length)));
      for (uint64_t at = 0; at < length; at += kSectorSize) {
        if (std::memcmp(from_source.data() + at, from_dest.data() + at, kSectorSize) != 0)
          differences.Add(offset + at, kSectorSize);
      }
      compared += length;
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double rate = seconds > 0 ? static_cast<double>(compared) / seconds : 0;
      bar.Update(compared, total, rate,
                 rate > 0 ? std::optional<double>(static_cast<double>(total - compared) / rate)
                          : std::nullopt);
    }
    first = end_region < map.size() ? map.FindNextSet(end_region) : map.size();
  }
  bar.Finish(compared, total);
  const std::vector<Range>& ranges = differences.ranges();
  for (size_t i = 0; i < ranges.size() && i < kMaxListed; ++i)
    std::printf("differs: bytes %llu..%llu (%s)\n",
                static_cast<unsigned long long>(ranges[i].begin),
                static_cast<unsigned long long>(ranges[i].end - 1),
                HumanBytes(ranges[i].end - ranges[i].begin).c_str());
  if (ranges.size() > kMaxListed)
    std::printf("... and %zu more ranges\n", ranges.size() - kMaxListed);
  std::printf(
      "verified clone %s: %s in %llu hydrated regions compared (%llu not hydrated, "
      "skipped): %s\n",
      record.name.c_str(), HumanBytes(compared).c_str(), static_cast<unsigned long long>(hydrated),
      static_cast<unsigned long long>(geometry.region_count - hydrated),
      ranges.empty()
          ? "equal"
          : absl::StrCat(ranges.size(), " range(s) differ, ", HumanBytes(differences.bytes()))
                .c_str());
  return ranges.empty() ? kExitOk : kExitFailure;
}

}  // namespace blkclone::cli

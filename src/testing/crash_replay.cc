// Crash images from recorded logs, with optional torn writes.
#include "blkclone/testing/crash_replay.hpp"

#include <algorithm>
#include <cstring>

namespace blkclone {
namespace {

constexpr uint64_t kSector = 512;

// Applies `entry` to `image`, only its first `sectors` sectors when torn.
void Apply(const LogEntry& entry, uint64_t sectors, std::vector<std::byte>& image) {
  const uint64_t length = std::min(entry.length, sectors * kSector);
  if (entry.op == Op::kWrite) {
    std::memcpy(image.data() + entry.offset, entry.data.data(), length);
  } else if (entry.op == Op::kDiscard || entry.op == Op::kWriteZeroes) {
    std::memset(image.data() + entry.offset, 0, length);
  }
}

size_t EntriesBefore(const WriteLog& log, uint64_t tick) {
  return std::partition_point(log.begin(), log.end(),
                              [tick](const LogEntry& e) { return e.completed_at < tick; }) -
         log.begin();
}

std::vector<std::byte> CrashImage(const Recording& recording, uint64_t tick, Landing landing,
                                  std::mt19937_64& rng) {
  const size_t entries = EntriesBefore(recording.log, tick);
  const CrashState state = CrashStateAfter(recording.log, entries);
  std::vector<uint64_t> sectors(entries, 0);  // how much of each entry lands
  for (size_t i : state.durable) sectors[i] = UINT64_MAX;
  std::vector<size_t> landed;
  for (size_t i : state.undetermined) {
    const bool lands = landing == Landing::kAll ||
                       ((landing == Landing::kRandom || landing == Landing::kRandomTorn) &&
                        (rng() & 1) != 0);
    if (lands) {
      sectors[i] = UINT64_MAX;
      landed.push_back(i);
    }
  }
  if (landing == Landing::kRandomTorn && !landed.empty()) {
    const size_t torn = landed[rng() % landed.size()];
    const uint64_t total = recording.log[torn].length / kSector;
    if (total > 0) sectors[torn] = rng() % total;
  }
  std::vector<std::byte> image = recording.initial;
  for (size_t i = 0; i < entries; ++i) {
    if (sectors[i] != 0) Apply(recording.log[i], sectors[i], image);
  }
  return image;
}

}  // namespace

std::vector<uint64_t> CrashTicks(std::span<const Recording> recordings) {
  std::vector<uint64_t> ticks = {0};
  for (const Recording& r : recordings) {
    for (const LogEntry& e : r.log) ticks.push_back(e.completed_at + 1);
  }
  std::sort(ticks.begin(), ticks.end());
  ticks.erase(std::unique(ticks.begin(), ticks.end()), ticks.end());
  return ticks;
}

std::vector<uint64_t> FlushTicks(std::span<const Recording> recordings) {
  std::vector<uint64_t> ticks;
  for (const Recording& r : recordings) {
    for (const LogEntry& e : r.log) {
      if (e.op == Op::kFlush) ticks.push_back(e.completed_at + 1);
    }
  }
  std::sort(ticks.begin(), ticks.end());
  return ticks;
}

std::vector<std::vector<std::byte>> CrashImages(std::span<const Recording> recordings,
                                                uint64_t tick, Landing landing,
                                                std::mt19937_64& rng) {
  std::vector<std::vector<std::byte>> images;
  images.reserve(recordings.size());
  for (const Recording& r : recordings) images.push_back(CrashImage(r, tick, landing, rng));
  return images;
}

}  // namespace blkclone

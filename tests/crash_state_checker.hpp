// Checks one crash state of a recorded clone (its metadata and destination
// images) the way a restarted program meets it, then restarts it and crashes
// it again:
//   1. Check passes and the metadata opens read-write without repair;
//   2. every block reads back as the BlockOracle allows at the crash tick
//      (I1/I2: never the destination's stale content; I3: what a FLUSH or FUA
//      made durable);
//   3. writes into it (a partial write and a full-region overwrite of
//      unhydrated regions, a FUA write), a FLUSH, one more unflushed write,
//      then a power failure that keeps only what was durable;
//   4. Check passes again, and the reopened clone reads what step 2 read with
//      step 3's flushed writes on top (the unflushed one there or not).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "blkclone/clone_geometry.hpp"
#include "blkclone/testing/crash_replay.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "crash_history.hpp"

namespace blkclone::testing {

// Sanitizer builds check a state many times slower, and find races in the
// recorded runs rather than in the replay: they replay every 16th instant.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr uint64_t kReplayStride = 16;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr uint64_t kReplayStride = 16;
#else
inline constexpr uint64_t kReplayStride = 1;
#endif
#else
inline constexpr uint64_t kReplayStride = 1;
#endif

class CrashStateChecker {
 public:
  // `source` is the source's content.
  CrashStateChecker(std::span<const std::byte> source, const CloneGeometry& geometry);

  // Checks the crash states of a run recorded as {metadata, destination}:
  // every `stride`-th instant of CrashTicks, each with none, all, random and
  // torn landings. Returns how many states it checked; stops at the first
  // problem, which it describes in `error`.
  uint64_t CheckAll(const std::vector<Recording>& recordings, const BlockOracle& oracle,
                    uint64_t stride, std::mt19937_64& rng, std::string& error);

  // Empty if the state passes, else the first problem. `seed` picks step 3's writes.
  std::string Check(const std::vector<std::byte>& meta_image,
                    const std::vector<std::byte>& dest_image, const BlockOracle& oracle,
                    uint64_t tick, uint64_t seed);

  // How many different pairs of images CheckAll met.
  size_t distinct() const { return distinct_.size(); }

 private:
  std::string CheckRestart(const std::vector<std::byte>& meta_image,
                           const std::vector<std::byte>& dest_image,
                           const std::vector<std::byte>& expected,
                           const std::vector<UserOp>& unflushed);

  const CloneGeometry geometry_;
  std::unique_ptr<MemoryDevice> source_memory_;
  std::unique_ptr<ReadOnlyGuard<MemoryDevice>> source_;
  std::set<size_t> distinct_;  // hashes of image pairs
};

// What a crash test sets up once: the source (content and guarded device),
// the geometry and the checker; and the devices each recorded run starts from.
struct CrashBench {
  CrashBench(uint64_t size, uint64_t region_size);

  // A formatted metadata device, and a destination holding stale content
  // (from `seed`) that a bug would show.
  struct Devices {
    std::unique_ptr<MemoryDevice> meta, dest;
  };
  Devices NewDevices(uint64_t seed) const;

  const std::vector<std::byte> source_data;
  const std::unique_ptr<MemoryDevice> source_memory;
  ReadOnlyGuard<MemoryDevice> source;
  const CloneGeometry geometry;
  CrashStateChecker checker;
};

}  // namespace blkclone::testing

// Crash replay across several recorded devices (CrashMonkey's method on
// dm-log-writes logs): the images a power failure at any instant could leave
// on every device at once, for a test to reopen and check.
//
// Record each device with a RecordingDevice sharing one RecordingClock, run a
// workload, then:
//
//   std::vector<blkclone::Recording> recordings = {{meta_before, meta.Log()},
//                                                 {dest_before, dest.Log()}};
//   std::mt19937_64 rng(1);
//   for (uint64_t tick : blkclone::CrashTicks(recordings)) {
//     auto images = blkclone::CrashImages(recordings, tick, blkclone::Landing::kRandom, rng);
//     ReopenAndCheck(images[0], images[1]);
//   }
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "blkclone/testing/recording_device.hpp"

namespace blkclone {

// One device's recording: its image when recording started and its log.
struct Recording {
  std::vector<std::byte> initial;
  WriteLog log;
};

// Which of the writes that were not yet durable at the crash reached the media.
enum class Landing {
  kNone,        // none of them
  kAll,         // all of them
  kRandom,      // each with probability 1/2
  kRandomTorn,  // as kRandom, and one of them lands only partly (a prefix of its sectors)
};

// The instants worth a crash: right after each completion logged on any device
// (every flush boundary among them), in increasing order, and the instant
// before the first. A crash at tick t loses what completed at t or later.
std::vector<uint64_t> CrashTicks(std::span<const Recording> recordings);

// The flush boundaries only: right after each logged flush of any device.
std::vector<uint64_t> FlushTicks(std::span<const Recording> recordings);

// The image of each device after a power failure at `tick`: what was durable
// by then (FUA, or covered by a completed flush) plus what `landing` picks of
// the rest, applied in completion order.
std::vector<std::vector<std::byte>> CrashImages(std::span<const Recording> recordings,
                                                uint64_t tick, Landing landing,
                                                std::mt19937_64& rng);

}  // namespace blkclone

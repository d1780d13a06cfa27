// Control: a clone's text interface in dm-clone's syntax (clone-semantics,
// "Control interface"). Parses table lines and messages, formats the status
// line, and goes beyond dm-clone with the same status as JSON and in human
// units and with messages for the rate limit and copy retries.
//
//   BLKCLONE_ASSIGN_OR_RETURN(blkclone::CloneTable table,
//       blkclone::ParseTable("0 2097152 clone /dev/m /dev/d /dev/s 8 1 no_hydration"));
//   BLKCLONE_ASSIGN_OR_RETURN(blkclone::ControlMessage message,
//       blkclone::ParseMessage("hydration_threshold 8"));
//   blkclone::ApplyMessage(message, hydrator, limiter);
//   std::puts(blkclone::FormatStatusLine(blkclone::CollectStatus(*clone, hydrator,
//   limiter)).c_str());
//
// Every parse error is kInvalidArgument with a message that names the argument
// and the problem ("region size 3000: not a power of two"). Sizes in table
// lines and status lines are in 512-byte sectors, as device-mapper counts.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/events.hpp"
#include "blkclone/metadata.hpp"
#include "blkclone/rate_limiter.hpp"

namespace blkclone {

inline constexpr uint64_t kSectorSize = 512;

// A parsed table line: clone <metadata dev> <destination dev> <source dev>
// <region size> [<#feature args> <feature>* [<#core args> <key> <value>]*].
struct CloneTable {
  // From a leading "<start> <length>" pair; the start must be 0.
  std::optional<uint64_t> length_sectors = std::nullopt;
  std::string metadata_device = {};
  std::string destination_device = {};
  std::string source_device = {};
  uint64_t region_sectors = 0;
  bool no_hydration = false;
  bool no_discard_passdown = false;
  uint32_t hydration_threshold = 1;
  uint32_t hydration_batch_size = 1;

  uint64_t region_size() const { return region_sectors * kSectorSize; }
  bool operator==(const CloneTable&) const = default;
};

// Parses a table line given as words (as a command line passes it) or as one
// string. Checks everything that needs no device: counts, numbers, features,
// core arguments, and the region size rules (power of two, 8..2097152 sectors).
[[nodiscard]] absl::StatusOr<CloneTable> ParseTable(std::span<const std::string> words);
[[nodiscard]] absl::StatusOr<CloneTable> ParseTable(absl::string_view line);

// The normalised line, as `dmsetup table` prints it: "0 <length> " when the
// length is known, then every feature given and all four core arguments.
std::string FormatTable(const CloneTable& table);

// The length of the table, if given, must equal the source's size in sectors.
[[nodiscard]] absl::Status CheckTableLength(const CloneTable& table, uint64_t source_bytes);

// A run-time message: dm-clone's four, then blkclone's.
struct ControlMessage {
  enum class Kind {
    kEnableHydration,
    kDisableHydration,
    kHydrationThreshold,  // value: regions
    kHydrationBatchSize,  // value: regions, >= 1
    kRateLimit,           // value: bytes per second, 0 = unlimited
    kRetryPolicy,         // the retry_* fields
    kRestartHydration,    // after background hydration stopped on copy failures
  };
  Kind kind = Kind::kEnableHydration;
  uint64_t value = 0;
  uint32_t retry_max_failures = 0;
  std::chrono::milliseconds retry_first_delay{0};
  std::chrono::milliseconds retry_max_delay{0};
};

// Parses a message; its keyword is matched without regard to case, as dm-clone does.
[[nodiscard]] absl::StatusOr<ControlMessage> ParseMessage(std::span<const std::string> words);
[[nodiscard]] absl::StatusOr<ControlMessage> ParseMessage(absl::string_view line);

// Carries out a parsed message on a running clone's hydrator and rate limiter.
template <class HydratorT>
void ApplyMessage(const ControlMessage& message, HydratorT& hydrator, RateLimiter& limiter) {
  using Kind = ControlMessage::Kind;
  switch (message.kind) {
    case Kind::kEnableHydration:
      return hydrator.Enable();
    case Kind::kDisableHydration:
      return hydrator.Disable();
    case Kind::kHydrationThreshold:
      return hydrator.SetThreshold(message.value);
    case Kind::kHydrationBatchSize:
      return hydrator.SetBatchSize(message.value);
    case Kind::kRateLimit:
      return limiter.SetRate(message.value);
    case Kind::kRetryPolicy:
      return hydrator.SetRetryPolicy(message.retry_max_failures, message.retry_first_delay,
                                     message.retry_max_delay);
    case Kind::kRestartHydration:
      return hydrator.Restart();
  }
}

// Bytes of the source's data and holes, in all and hydrated.
struct DataAndHoles {
  uint64_t data = 0;
  uint64_t holes = 0;
  uint64_t hydrated_data = 0;
  uint64_t hydrated_holes = 0;
};

// Everything the three status forms show. Sizes in bytes.
struct CloneStatus {
  CloneMode mode = CloneMode::kReadWrite;
  // False: read from the committed metadata of a clone that nothing runs.
  bool active = true;
  MetadataUsage metadata = {};
  uint64_t region_size = 0;
  uint64_t source_size = 0;
  uint64_t hydrated_regions = 0;
  uint64_t total_regions = 0;
  uint64_t hydrating_regions = 0;
  bool hydration_enabled = true;
  bool discard_passdown = true;
  uint64_t hydration_threshold = 1;
  uint64_t hydration_batch_size = 1;
  // Beyond dm-clone.
  uint64_t rate_limit = 0;  // bytes/s, 0 = unlimited
  double copy_rate = 0;     // bytes/s of data over the last seconds
  std::optional<double> eta_seconds = std::nullopt;  // over the data still to copy
  // Once the source has described itself (running clones only): its data,
  // which hydration copies, and its holes, which it zeroes.
  std::optional<DataAndHoles> data_and_holes = std::nullopt;
  bool hydration_stopped = false;  // by repeated copy failures
  std::string stop_reason = {};

  uint64_t hydrated_bytes() const;
};

// The status of a running clone with its Hydrator and RateLimiter.
template <class CloneT, class HydratorT>
CloneStatus CollectStatus(const CloneT& clone, const HydratorT& hydrator,
                          const RateLimiter& limiter) {
  const auto progress = hydrator.progress();
  const CloneGeometry& geometry = clone.geometry();
  return CloneStatus{.mode = clone.mode(),
                     .metadata = clone.metadata().usage(),
                     .region_size = geometry.region_size,
                     .source_size = geometry.source_size,
                     .hydrated_regions = progress.hydrated_regions,
                     .total_regions = geometry.region_count,
                     .hydrating_regions = clone.hydrating_regions(),
                     .hydration_enabled = hydrator.enabled(),
                     .discard_passdown = clone.discard_passdown(),
                     .hydration_threshold = hydrator.threshold(),
                     .hydration_batch_size = hydrator.batch_size(),
                     .rate_limit = limiter.rate(),
                     .copy_rate = progress.bytes_per_second,
                     .eta_seconds = progress.eta_seconds,
                     .data_and_holes = progress.data_known
                                           ? std::optional<DataAndHoles>(DataAndHoles{
                                                 .data = progress.data_bytes,
                                                 .holes = progress.hole_bytes,
                                                 .hydrated_data = progress.hydrated_data_bytes,
                                                 .hydrated_holes = progress.hydrated_hole_bytes})
                                           : std::nullopt,
                     .hydration_stopped = progress.stopped,
                     .stop_reason = std::string(progress.stop_reason.message())};
}

// dm-clone's status line, or just "Fail" in fail mode.
std::string FormatStatusLine(const CloneStatus& status);
// One JSON object; in fail mode only "mode" and "active".
std::string FormatStatusJson(const CloneStatus& status);
// Labelled lines in KiB/MiB/GiB, with percentage, copy rate and ETA.
std::string FormatStatusHuman(const CloneStatus& status);

// ---- Helpers shared with tools ----

// A decimal integer in [min, max]; errors read "<what> <text>: <problem>".
[[nodiscard]] absl::StatusOr<uint64_t> ParseNumber(absl::string_view what, absl::string_view text,
                                                   uint64_t min = 0, uint64_t max = UINT64_MAX);
// A byte count with an optional binary suffix K, M, G or T (also KiB, ...):
// "64K" is 65536.
[[nodiscard]] absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text);
// "512 B", "64.0 KiB", "1.5 GiB".
std::string HumanBytes(uint64_t bytes);
// "99.9%": rounded down, so that 100.0% means all of it.
std::string HumanPercent(uint64_t part, uint64_t whole);
// "42s", "3m05s", "2h07m".
std::string HumanDuration(double seconds);

}  // namespace blkclone

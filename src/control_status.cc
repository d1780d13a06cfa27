// The three forms of a clone's status: dm-clone's line, JSON, and human units.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/control.hpp"
#include "json_text.hpp"

namespace blkclone {
namespace {

// The features a status lists: what is off, as dm-clone shows it.
std::vector<absl::string_view> Features(const CloneStatus& status) {
  std::vector<absl::string_view> features;
  if (!status.hydration_enabled) features.push_back("no_hydration");
  if (!status.discard_passdown) features.push_back("no_discard_passdown");
  return features;
}

// The hydrator's state in one word: what an operator checks first.
absl::string_view HydrationState(const CloneStatus& status) {
  if (status.hydrated_regions == status.total_regions) return "complete";
  if (status.hydration_stopped) return "stopped";
  return status.hydration_enabled ? "enabled" : "disabled";
}

// "1 region", "2 regions".
std::string Plural(uint64_t count, absl::string_view noun) {
  return absl::StrCat(count, " ", noun, count == 1 ? "" : "s");
}

// "12.5 MiB/s".
std::string HumanRate(double bytes_per_second) {
  return absl::StrCat(HumanBytes(static_cast<uint64_t>(std::llround(bytes_per_second))), "/s");
}

}  // namespace

uint64_t CloneStatus::hydrated_bytes() const {
  if (hydrated_regions >= total_regions) return source_size;
  return std::min(hydrated_regions * region_size, source_size);
}

std::string FormatStatusLine(const CloneStatus& status) {
  if (status.mode == CloneMode::kFail) return "Fail";
  const std::vector<absl::string_view> features = Features(status);
  std::string line =
      absl::StrCat(status.metadata.block_size / kSectorSize, " ", status.metadata.used_blocks, "/",
                   status.metadata.total_blocks, " ", status.region_size / kSectorSize, " ",
                   status.hydrated_regions, "/", status.total_regions, " ",
                   status.hydrating_regions, " ", features.size());
  for (absl::string_view feature : features) absl::StrAppend(&line, " ", feature);
  absl::StrAppend(&line, " 4 hydration_threshold ", status.hydration_threshold,
                  " hydration_batch_size ", status.hydration_batch_size, " ",
                  ModeName(status.mode));
  return line;
}

std::string FormatStatusJson(const CloneStatus& status) {
  nlohmann::ordered_json json = {{"mode", std::string(ModeName(status.mode))},
                                 {"active", status.active}};
  if (status.mode != CloneMode::kFail) {
    json["metadata"] = {{"block_size", status.metadata.block_size},
                        {"used_blocks", status.metadata.used_blocks},
                        {"total_blocks", status.metadata.total_blocks}};
    json["region_size"] = status.region_size;
    json["regions"] = {{"hydrated", status.hydrated_regions},
                       {"total", status.total_regions},
                       {"hydrating", status.hydrating_regions}};
    json["bytes"] = {{"hydrated", status.hydrated_bytes()}, {"total", status.source_size}};
    if (const std::optional<DataAndHoles>& split = status.data_and_holes) {
      json["bytes"]["data"] = {{"hydrated", split->hydrated_data}, {"total", split->data}};
      json["bytes"]["holes"] = {{"hydrated", split->hydrated_holes}, {"total", split->holes}};
    } else {
      json["bytes"]["data"] = nullptr;  // not known
      json["bytes"]["holes"] = nullptr;
    }
    nlohmann::ordered_json& features = json["features"] = nlohmann::ordered_json::array();
    for (absl::string_view feature : Features(status)) features.push_back(std::string(feature));
    json["core_args"] = {{"hydration_threshold", status.hydration_threshold},
                         {"hydration_batch_size", status.hydration_batch_size}};
    json["hydration"] = {{"state", std::string(HydrationState(status))},
                         {"rate_limit", status.rate_limit},
                         {"copy_rate", static_cast<uint64_t>(std::llround(status.copy_rate))},
                         {"eta_seconds", status.eta_seconds ? nlohmann::ordered_json(
                                                                  std::llround(*status.eta_seconds))
                                                            : nlohmann::ordered_json(nullptr)},
                         {"stop_reason", status.stop_reason}};
  }
  return internal::JsonText(json);
}

std::string FormatStatusHuman(const CloneStatus& status) {
  if (status.mode == CloneMode::kFail)
    return "mode       Fail: the metadata is unusable and every request fails; reopen the clone\n";
  std::string text;
  auto line = [&text](absl::string_view label, absl::string_view value) {
    absl::StrAppend(&text, label, std::string(11 - label.size(), ' '), value, "\n");
  };
  line("mode", status.mode == CloneMode::kReadWrite
                   ? "rw"
                   : "ro: a commit failed; reads work, changes fail until the clone is reopened");
  if (!status.active) line("running", "no (the committed state of the metadata)");
  line("hydrated",
       absl::StrCat(HumanBytes(status.hydrated_bytes()), " of ", HumanBytes(status.source_size),
                    " (", HumanPercent(status.hydrated_bytes(), status.source_size), "), ",
                    status.hydrated_regions, " of ", Plural(status.total_regions, "region"), " of ",
                    HumanBytes(status.region_size)));
  if (const std::optional<DataAndHoles>& split = status.data_and_holes) {
    line("data", absl::StrCat(HumanBytes(split->hydrated_data), " of ", HumanBytes(split->data),
                              " copied"));
    line("holes", absl::StrCat(HumanBytes(split->hydrated_holes), " of ",
                               HumanBytes(split->holes), " zeroed, not copied"));
  }
  line("hydrating", Plural(status.hydrating_regions, "region"));
  std::string hydration =
      absl::StrCat(HydrationState(status), ", threshold ", status.hydration_threshold, ", batch ",
                   status.hydration_batch_size);
  if (status.hydration_stopped) absl::StrAppend(&hydration, ": ", status.stop_reason);
  line("hydration", hydration);
  if (status.active) {
    std::string rate = absl::StrCat(
        HumanRate(status.copy_rate), ", limit ",
        status.rate_limit == 0 ? "none" : HumanRate(static_cast<double>(status.rate_limit)));
    if (status.eta_seconds) absl::StrAppend(&rate, ", ETA ", HumanDuration(*status.eta_seconds));
    line("rate", rate);
  }
  line("discards", status.discard_passdown ? "passed down to the destination"
                                           : "not passed down (no_discard_passdown)");
  line("metadata", absl::StrCat(status.metadata.used_blocks, " of ",
                                Plural(status.metadata.total_blocks, "block"), " of ",
                                HumanBytes(status.metadata.block_size), " used"));
  return text;
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f %s", value, kUnits[unit]);
  return text;
}

std::string HumanPercent(uint64_t part, uint64_t whole) {
  const double tenths =
      whole == 0 ? 1000
                 : std::floor(1000.0 * static_cast<double>(part) / static_cast<double>(whole));
  char text[16];
  std::snprintf(text, sizeof(text), "%.1f%%", tenths / 10);
  return text;
}

std::string HumanDuration(double seconds) {
  const uint64_t s = seconds <= 0 ? 0 : static_cast<uint64_t>(std::ceil(seconds));
  char text[32];
  if (s < 60) {
    std::snprintf(text, sizeof(text), "%" PRIu64 "s", s);
  } else if (s < 3600) {
    std::snprintf(text, sizeof(text), "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(text, sizeof(text), "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
  } else {
    std::snprintf(text, sizeof(text), "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
  }
  return text;
}

}  // namespace blkclone

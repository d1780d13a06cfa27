// Parsing of table lines, messages, numbers and sizes for the control interface.
#include "blkclone/control.hpp"

#include <algorithm>
#include <bit>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "blkclone/clone_geometry.hpp"
#include "blkclone/status.hpp"

namespace blkclone {
namespace {

constexpr absl::string_view kTarget = "clone";
constexpr absl::string_view kNoHydration = "no_hydration";
constexpr absl::string_view kNoDiscardPassdown = "no_discard_passdown";
constexpr absl::string_view kThreshold = "hydration_threshold";
constexpr absl::string_view kBatchSize = "hydration_batch_size";

// kInvalidArgument reading "<what> <text>: <problem>".
absl::Status Invalid(absl::string_view what, absl::string_view text, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(what, " ", text, ": ", problem));
}

// Words separated by any whitespace, as device-mapper splits a line.
std::vector<std::string> SplitWords(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t\r\n"), absl::SkipEmpty());
}

// Digits only: no sign, no space, no base prefix.
bool IsDecimal(absl::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), absl::ascii_isdigit);
}

// Reads the words of a table line front to back.
class Words {
 public:
  explicit Words(std::span<const std::string> words) : words_(words) {}
  bool done() const { return next_ == words_.size(); }
  size_t left() const { return words_.size() - next_; }
  absl::string_view Peek(size_t ahead = 0) const { return words_[next_ + ahead]; }
  absl::string_view Take() { return words_[next_++]; }

 private:
  std::span<const std::string> words_;
  size_t next_ = 0;
};

// The region size in sectors, checked in bytes (CheckRegionSize).
absl::Status ParseRegionSize(absl::string_view text, CloneTable& table) {
  BLKCLONE_ASSIGN_OR_RETURN(table.region_sectors, ParseNumber("region size", text, 1));
  // Past 2^64 bytes: a size as far out of range, a power of two exactly when the sectors are.
  const uint64_t sectors = table.region_sectors;
  const uint64_t bytes = sectors <= UINT64_MAX / kSectorSize ? sectors * kSectorSize
                         : std::has_single_bit(sectors)      ? uint64_t{1} << 63
                                                             : UINT64_MAX;
  if (absl::Status rule = CheckRegionSize(bytes); !rule.ok())
    return Invalid("region size", text, rule.message());
  return absl::OkStatus();
}

// <#feature args> <feature>*: each known feature at most once.
absl::Status ParseFeatures(Words& words, CloneTable& table) {
  const absl::string_view count_text = words.Take();
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t count, ParseNumber("feature count", count_text));
  if (count > words.left())
    return Invalid("feature count", count_text,
                   absl::StrCat("only ", words.left(), " argument(s) follow"));
  for (uint64_t i = 0; i < count; ++i) {
    const absl::string_view feature = words.Take();
    bool* flag = absl::EqualsIgnoreCase(feature, kNoHydration)         ? &table.no_hydration
                 : absl::EqualsIgnoreCase(feature, kNoDiscardPassdown) ? &table.no_discard_passdown
                                                                       : nullptr;
    if (flag == nullptr)
      return Invalid("feature", feature,
                     absl::StrCat("unknown (known: ", kNoHydration, ", ", kNoDiscardPassdown, ")"));
    if (*flag) return Invalid("feature", feature, "given twice");
    *flag = true;
  }
  return absl::OkStatus();
}

// hydration_threshold: 0 (background hydration off) or more regions.
absl::StatusOr<uint32_t> ParseThreshold(absl::string_view text) {
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t value, ParseNumber(kThreshold, text, 0, UINT32_MAX));
  return static_cast<uint32_t>(value);
}

// hydration_batch_size: at least one region.
absl::StatusOr<uint32_t> ParseBatchSize(absl::string_view text) {
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t value, ParseNumber(kBatchSize, text, 1, UINT32_MAX));
  return static_cast<uint32_t>(value);
}

// <#core args> <key> <value>...: the count is of words, so it is even.
absl::Status ParseCoreArgs(Words& words, CloneTable& table) {
  const absl::string_view count_text = words.Take();
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t count, ParseNumber("core argument count", count_text));
  if (count % 2 != 0)
    return Invalid("core argument count", count_text,
                   "odd, but core arguments are key-value pairs");
  if (count > words.left())
    return Invalid("core argument count", count_text,
                   absl::StrCat("only ", words.left(), " argument(s) follow"));
  bool threshold_seen = false, batch_seen = false;
  for (uint64_t i = 0; i < count; i += 2) {
    const absl::string_view key = words.Take(), value = words.Take();
    if (absl::EqualsIgnoreCase(key, kThreshold)) {
      if (std::exchange(threshold_seen, true)) return Invalid("core argument", key, "given twice");
      BLKCLONE_ASSIGN_OR_RETURN(table.hydration_threshold, ParseThreshold(value));
    } else if (absl::EqualsIgnoreCase(key, kBatchSize)) {
      if (std::exchange(batch_seen, true)) return Invalid("core argument", key, "given twice");
      BLKCLONE_ASSIGN_OR_RETURN(table.hydration_batch_size, ParseBatchSize(value));
    } else {
      return Invalid("core argument", key,
                     absl::StrCat("unknown (known: ", kThreshold, ", ", kBatchSize, ")"));
    }
  }
  return absl::OkStatus();
}

// The optional "<start> <length>" in front of the target type.
absl::Status ParseStartAndLength(Words& words, CloneTable& table) {
  if (words.left() < 3 || !IsDecimal(words.Peek()) || words.Peek(2) != kTarget)
    return absl::OkStatus();
  const absl::string_view start = words.Take();
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t start_sector, ParseNumber("start sector", start));
  if (start_sector != 0)
    return Invalid("start sector", start, "must be 0 (a clone is one target covering the device)");
  BLKCLONE_ASSIGN_OR_RETURN(table.length_sectors, ParseNumber("length", words.Take(), 1));
  return absl::OkStatus();
}

// A message of exactly `count` words; `expected` names its arguments.
absl::Status ExpectArguments(std::span<const std::string> words, size_t count,
                             absl::string_view name, absl::string_view expected) {
  if (words.size() == count) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": expected ", expected, ", got ", words.size() - 1, " argument(s)"));
}

}  // namespace

absl::StatusOr<uint64_t> ParseNumber(absl::string_view what, absl::string_view text, uint64_t min,
                                     uint64_t max) {
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": missing value"));
  if (!IsDecimal(text)) return Invalid(what, text, "not a number");
  uint64_t value = 0;
  for (char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return Invalid(what, text, "too large");
    value = value * 10 + digit;
  }
  if (value < min) return Invalid(what, text, absl::StrCat("must be at least ", min));
  if (value > max) return Invalid(what, text, absl::StrCat("must be at most ", max));
  return value;
}

absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  if (digits == 0 && !text.empty()) return Invalid(what, text, "not a size (e.g. 512, 64K, 1G)");
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t value, ParseNumber(what, text.substr(0, digits)));
  const absl::string_view unit = text.substr(digits);
  int shift = -1;
  constexpr absl::string_view kUnits = "KMGT";
  if (unit.empty() || absl::EqualsIgnoreCase(unit, "B")) {
    shift = 0;
  } else if (const size_t at = kUnits.find(absl::ascii_toupper(unit[0]));
             at != absl::string_view::npos &&
             (unit.size() == 1 || absl::EqualsIgnoreCase(unit.substr(1), "iB"))) {
    shift = 10 * static_cast<int>(at + 1);
  }
  if (shift < 0)
    return Invalid(what, text, absl::StrCat("unknown unit ", unit, " (use K, M, G or T)"));
  if (shift > 0 && value > (UINT64_MAX >> shift)) return Invalid(what, text, "too large");
  return value << shift;
}

absl::StatusOr<CloneTable> ParseTable(std::span<const std::string> all) {
  if (all.empty()) return absl::InvalidArgumentError("table line: empty");
  Words words(all);
  CloneTable table;
  BLKCLONE_RETURN_IF_ERROR(ParseStartAndLength(words, table));
  const absl::string_view target = words.Take();
  if (target != kTarget)
    return Invalid("target type", target, "not clone (expected [<start> <length>] clone ...)");
  if (words.left() < 4)
    return absl::InvalidArgumentError(absl::StrCat(
        "clone: expected <metadata dev> <destination dev> <source dev> <region size>, got ",
        words.left(), " argument(s)"));
  table.metadata_device = std::string(words.Take());
  table.destination_device = std::string(words.Take());
  table.source_device = std::string(words.Take());
  BLKCLONE_RETURN_IF_ERROR(ParseRegionSize(words.Take(), table));
  if (!words.done()) BLKCLONE_RETURN_IF_ERROR(ParseFeatures(words, table));
  if (!words.done()) BLKCLONE_RETURN_IF_ERROR(ParseCoreArgs(words, table));
  if (!words.done())
    return Invalid("argument", words.Peek(), "unexpected after the core arguments");
  return table;
}

absl::StatusOr<CloneTable> ParseTable(absl::string_view line) {
  return ParseTable(SplitWords(line));
}

std::string FormatTable(const CloneTable& table) {
  std::string line;
  if (table.length_sectors) absl::StrAppend(&line, "0 ", *table.length_sectors, " ");
  absl::StrAppend(&line, kTarget, " ", table.metadata_device, " ", table.destination_device, " ",
                  table.source_device, " ", table.region_sectors, " ",
                  table.no_hydration + table.no_discard_passdown);
  if (table.no_hydration) absl::StrAppend(&line, " ", kNoHydration);
  if (table.no_discard_passdown) absl::StrAppend(&line, " ", kNoDiscardPassdown);
  absl::StrAppend(&line, " 4 ", kThreshold, " ", table.hydration_threshold, " ", kBatchSize, " ",
                  table.hydration_batch_size);
  return line;
}

absl::Status CheckTableLength(const CloneTable& table, uint64_t source_bytes) {
  if (!table.length_sectors || *table.length_sectors * kSectorSize == source_bytes)
    return absl::OkStatus();
  return Invalid(
      "length", absl::StrCat(*table.length_sectors),
      absl::StrCat("the source ", table.source_device, " has ", source_bytes / kSectorSize,
                   " sectors (", source_bytes, " bytes); the length must equal the source's size"));
}

absl::StatusOr<ControlMessage> ParseMessage(std::span<const std::string> words) {
  using Kind = ControlMessage::Kind;
  if (words.empty()) return absl::InvalidArgumentError("message: empty");
  const absl::string_view name = words[0];
  ControlMessage message;
  auto is = [&name](absl::string_view keyword) { return absl::EqualsIgnoreCase(name, keyword); };
  if (is("enable_hydration") || is("disable_hydration") || is("restart_hydration")) {
    BLKCLONE_RETURN_IF_ERROR(ExpectArguments(words, 1, name, "no argument"));
    message.kind = is("enable_hydration")    ? Kind::kEnableHydration
                   : is("disable_hydration") ? Kind::kDisableHydration
                                             : Kind::kRestartHydration;
  } else if (is(kThreshold)) {
    BLKCLONE_RETURN_IF_ERROR(ExpectArguments(words, 2, name, "<regions>"));
    message.kind = Kind::kHydrationThreshold;
    BLKCLONE_ASSIGN_OR_RETURN(message.value, ParseThreshold(words[1]));
  } else if (is(kBatchSize)) {
    BLKCLONE_RETURN_IF_ERROR(ExpectArguments(words, 2, name, "<regions>"));
    message.kind = Kind::kHydrationBatchSize;
    BLKCLONE_ASSIGN_OR_RETURN(message.value, ParseBatchSize(words[1]));
  } else if (is("rate_limit")) {
    BLKCLONE_RETURN_IF_ERROR(ExpectArguments(words, 2, name, "<bytes per second>"));
    message.kind = Kind::kRateLimit;
    BLKCLONE_ASSIGN_OR_RETURN(message.value, ParseSize("rate_limit", words[1]));
  } else if (is("retry_policy")) {
    BLKCLONE_RETURN_IF_ERROR(
        ExpectArguments(words, 4, name, "<max failures> <first delay ms> <max delay ms>"));
    message.kind = Kind::kRetryPolicy;
    BLKCLONE_ASSIGN_OR_RETURN(uint64_t failures,
                              ParseNumber("retry_policy max failures", words[1], 1, UINT32_MAX));
    BLKCLONE_ASSIGN_OR_RETURN(uint64_t first,
                              ParseNumber("retry_policy first delay", words[2], 0, UINT32_MAX));
    BLKCLONE_ASSIGN_OR_RETURN(uint64_t max,
                              ParseNumber("retry_policy max delay", words[3], 0, UINT32_MAX));
    if (max < first)
      return Invalid("retry_policy max delay", words[3],
                     absl::StrCat("less than the first delay ", first));
    message.retry_max_failures = static_cast<uint32_t>(failures);
    message.retry_first_delay = std::chrono::milliseconds(first);
    message.retry_max_delay = std::chrono::milliseconds(max);
  } else {
    return Invalid("message", name,
                   "unknown (known: enable_hydration, disable_hydration, hydration_threshold, "
                   "hydration_batch_size, rate_limit, retry_policy, restart_hydration)");
  }
  return message;
}

absl::StatusOr<ControlMessage> ParseMessage(absl::string_view line) {
  return ParseMessage(SplitWords(line));
}

}  // namespace blkclone

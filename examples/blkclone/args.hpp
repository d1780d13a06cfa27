// Command-line parsing for the blkclone subcommands: options come from the
// command's documentation, so every option that parses is documented.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "help.hpp"

namespace blkclone::cli {

struct ParsedArgs {
  std::vector<std::string> positional;
  absl::flat_hash_map<std::string, std::string> options;  // flag -> value ("" for a switch)

  bool Has(absl::string_view flag) const { return options.contains(flag); }
  std::optional<std::string> Get(absl::string_view flag) const;
  // The option's number in [min, max], or `fallback` when it is absent.
  absl::StatusOr<uint64_t> Number(absl::string_view flag, uint64_t fallback, uint64_t min = 0,
                                  uint64_t max = UINT64_MAX) const;
};

// Splits `args` into positional arguments and the options `options` lists
// ("--flag value" or "--flag=value"; "--" ends options). Unknown, repeated or
// valueless options are kInvalidArgument naming the option.
absl::StatusOr<ParsedArgs> ParseArgs(std::span<const std::string> args,
                                     std::span<const OptionDoc> options);

// kInvalidArgument unless there are between `min` and `max` positional
// arguments; `expected` names them ("NAME OFFSET FILE").
absl::Status ExpectPositional(const ParsedArgs& args, size_t min, size_t max,
                              absl::string_view expected);

}  // namespace blkclone::cli

// Option parsing driven by the commands' OptionDoc lists.
#include "args.hpp"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "blkclone/control.hpp"

namespace blkclone::cli {

std::optional<std::string> ParsedArgs::Get(absl::string_view flag) const {
  auto it = options.find(flag);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<uint64_t> ParsedArgs::Number(absl::string_view flag, uint64_t fallback, uint64_t min,
                                            uint64_t max) const {
  const std::optional<std::string> value = Get(flag);
  if (!value) return fallback;
  return ParseNumber(flag, *value, min, max);
}

absl::StatusOr<ParsedArgs> ParseArgs(std::span<const std::string> args,
                                     std::span<const OptionDoc> options) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (!absl::StartsWith(arg, "--")) {
      parsed.positional.push_back(arg);
      continue;
    }
    const size_t equals = arg.find('=');
    const std::string flag = arg.substr(0, equals);
    auto doc = std::find_if(options.begin(), options.end(),
                            [&flag](const OptionDoc& o) { return o.flag == flag; });
    if (doc == options.end())
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", flag));
    if (parsed.Has(flag)) return absl::InvalidArgumentError(absl::StrCat(flag, ": given twice"));
    std::string value;
    if (doc->value.empty()) {
      if (equals != std::string::npos)
        return absl::InvalidArgumentError(absl::StrCat(flag, ": takes no value"));
    } else if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": missing value (", doc->value, ")"));
    }
    parsed.options.emplace(flag, std::move(value));
  }
  return parsed;
}

absl::Status ExpectPositional(const ParsedArgs& args, size_t min, size_t max,
                              absl::string_view expected) {
  const size_t count = args.positional.size();
  if (count >= min && count <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", expected, ", got ", count, " argument", count == 1 ? "" : "s"));
}

}  // namespace blkclone::cli

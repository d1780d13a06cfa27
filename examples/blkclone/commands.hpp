// The subcommands of blkclone. Each takes its parsed arguments and returns
// its exit status (0, or 1 when it found something: problems, differences) or
// an error, which main prints on one line and maps with ExitCode.
#pragma once

#include "absl/status/statusor.h"
#include "args.hpp"

namespace blkclone::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// kExitUsage for errors in what was asked (arguments, files, sizes, names,
// another clone's metadata): they are found before anything is written.
// kExitFailure for the rest: I/O, a clone in use or not running, work undone.
int ExitCode(const absl::Status& status);

using CommandFn = absl::StatusOr<int> (*)(const ParsedArgs& args);

absl::StatusOr<int> RunCreate(const ParsedArgs& args);
absl::StatusOr<int> RunServe(const ParsedArgs& args);
absl::StatusOr<int> RunStatus(const ParsedArgs& args);
absl::StatusOr<int> RunMessage(const ParsedArgs& args);
absl::StatusOr<int> RunHydrate(const ParsedArgs& args);
absl::StatusOr<int> RunFinalize(const ParsedArgs& args);
absl::StatusOr<int> RunCheck(const ParsedArgs& args);
absl::StatusOr<int> RunDump(const ParsedArgs& args);
absl::StatusOr<int> RunVerify(const ParsedArgs& args);
absl::StatusOr<int> RunWrite(const ParsedArgs& args);
absl::StatusOr<int> RunRead(const ParsedArgs& args);

// The function of a documented command; null for an unknown name.
CommandFn FindCommand(absl::string_view name);

}  // namespace blkclone::cli

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

// kExitUsage for errors in what was asked (arguments, files, sizes, names, a
// state directory that does not exist, create's devices): they are found
// before anything is written. kExitFailure for the rest: a recorded clone or
// its devices unusable as they are now (missing, changed, resized, in use,
// damaged metadata), I/O, a clone not running, work undone.
int ExitCode(const absl::Status& status);

// `status`, with a code for kExitFailure if it had one for kExitUsage: for the
// errors of opening what the command line rightly named.
absl::Status AsFailure(absl::Status status);

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

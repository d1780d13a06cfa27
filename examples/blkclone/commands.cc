// The command table and the mapping of errors to exit statuses.
#include "commands.hpp"

#include <utility>

namespace blkclone::cli {

int ExitCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

absl::Status AsFailure(absl::Status status) {
  if (ExitCode(status) != kExitUsage) return status;
  return absl::FailedPreconditionError(status.message());
}

CommandFn FindCommand(absl::string_view name) {
  static constexpr std::pair<absl::string_view, CommandFn> kCommands[] = {
      {"create", &RunCreate},   {"serve", &RunServe},     {"status", &RunStatus},
      {"message", &RunMessage}, {"hydrate", &RunHydrate}, {"finalize", &RunFinalize},
      {"check", &RunCheck},     {"dump", &RunDump},       {"verify", &RunVerify},
      {"write", &RunWrite},     {"read", &RunRead}};
  for (const auto& [command, run] : kCommands) {
    if (command == name) return run;
  }
  return nullptr;
}

}  // namespace blkclone::cli

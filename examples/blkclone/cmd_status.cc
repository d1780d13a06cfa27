// blkclone status and blkclone message: talk to a running clone through its
// control socket; status of a clone nothing runs comes from its metadata.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "blkclone/status.hpp"
#include "clone_devices.hpp"
#include "session.hpp"
#include "commands.hpp"
#include "control_client.hpp"
#include "state.hpp"

namespace blkclone::cli {
namespace {

// The committed state of a clone that no command runs (it takes the lock, so
// nothing commits meanwhile).
absl::StatusOr<CloneStatus> OfflineStatus(const StateDir& dir, const CloneRecord& record) {
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "status"));
  CloneDevices devices;
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, Backend::kFile, Access::kReadOnly, CloneParts::kMetadata, devices));
  return CloneSession::OfflineStatus(*devices.metadata, HydratorDefaults(record.table),
                                     !record.table.no_discard_passdown);
}

// `status` in the form a request asks for: dm, json or human.
std::string Format(const CloneStatus& status, absl::string_view form) {
  if (form == "json") return FormatStatusJson(status) + "\n";
  if (form == "human") return FormatStatusHuman(status);
  return FormatStatusLine(status) + "\n";
}

}  // namespace

absl::StatusOr<int> RunStatus(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  if (args.Has("--json") && args.Has("--human"))
    return absl::InvalidArgumentError("--json and --human: choose one");
  const absl::string_view form = args.Has("--json") ? "json" : args.Has("--human") ? "human" : "dm";
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  absl::StatusOr<std::string> answer =
      AskControlSocket(dir.File(record.name, "sock"), absl::StrCat("status ", form));
  if (absl::IsUnavailable(answer.status())) {
    BLKCLONE_ASSIGN_OR_RETURN(CloneStatus status, OfflineStatus(dir, record));
    answer = Format(status, form);
  }
  if (!answer.ok()) return answer.status();
  std::fputs(answer->c_str(), stdout);
  return kExitOk;
}

absl::StatusOr<int> RunMessage(const ParsedArgs& args) {
  if (args.positional.size() < 2)
    return absl::InvalidArgumentError(absl::StrCat("expected NAME [0] MESSAGE [ARGUMENT...], got ",
                                                   args.positional.size(), " argument(s)"));
  std::span<const std::string> words = std::span(args.positional).subspan(1);
  // dmsetup message's sector argument.
  if (words.size() > 1 && words[0] == "0") words = words.subspan(1);
  BLKCLONE_RETURN_IF_ERROR(ParseMessage(words).status());
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  absl::StatusOr<std::string> answer = AskControlSocket(
      dir.File(record.name, "sock"), absl::StrCat("message ", absl::StrJoin(words, " ")));
  if (absl::IsUnavailable(answer.status()))
    return absl::UnavailableError(absl::StrCat("clone ", record.name,
                                               ": not running; messages change a running clone "
                                               "(blkclone serve or hydrate)"));
  if (!answer.ok()) return answer.status();
  return kExitOk;
}

}  // namespace blkclone::cli

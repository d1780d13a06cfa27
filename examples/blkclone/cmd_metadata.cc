// blkclone check and blkclone dump: offline inspection of a metadata device,
// which they hold as any command running a clone does. A device that cannot
// be opened, like one with problems, is exit status 1.
#include <array>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/metadata_check.hpp"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "held_device.hpp"

namespace blkclone::cli {
namespace {

// The metadata device that the only positional argument names.
absl::StatusOr<HeldDevice> OpenMetadata(const ParsedArgs& args, Access access) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "METADATA"));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  std::string path = args.positional[0];
  BLKCLONE_RETURN_IF_ERROR(ApplyCephConf(args, std::array{&path}));
  absl::StatusOr<HeldDevice> held =
      OpenHeld("metadata device", path, backend, access, Hold::kExclusive);
  if (!held.ok()) return AsFailure(held.status());
  return held;
}

}  // namespace

absl::StatusOr<int> RunCheck(const ParsedArgs& args) {
  const bool clear = args.Has("--clear-needs-check-flag");
  const bool repair = args.Has("--repair");
  if (clear && repair)
    return absl::InvalidArgumentError("--clear-needs-check-flag and --repair exclude each other");
  BLKCLONE_ASSIGN_OR_RETURN(
      HeldDevice held, OpenMetadata(args, clear || repair ? Access::kReadWrite : Access::kReadOnly));
  AnyBlockDevice& device = held.device;
  const std::string& path = args.positional[0];
  CheckReport report = Check(device);
  for (const std::string& problem : report.problems) std::printf("%s\n", problem.c_str());
  for (const std::string& note : report.notes) std::printf("note: %s\n", note.c_str());
  if (!report.ok && repair) {
    std::printf("metadata device %s: %zu problem(s) found; repairing\n", path.c_str(),
                report.problems.size());
    BLKCLONE_RETURN_IF_ERROR(Repair(device).status());
    report = Check(device);
    for (const std::string& problem : report.problems) std::printf("%s\n", problem.c_str());
    for (const std::string& note : report.notes) std::printf("note: %s\n", note.c_str());
    if (report.ok) std::printf("repaired\n");
  }
  if (!report.ok) {
    std::printf("metadata device %s: %zu problem(s) found\n", path.c_str(), report.problems.size());
    return kExitFailure;
  }
  if (clear && report.header && report.header->needs_check) {
    BLKCLONE_RETURN_IF_ERROR(ClearNeedsCheck(device));
    std::printf("needs_check cleared\n");
  }
  std::printf("metadata device %s: clean", path.c_str());
  if (report.header)
    std::printf(" (format %u, uuid %s, generation %llu, %llu of %llu regions hydrated)",
                report.header->format_version, report.header->uuid.ToString().c_str(),
                static_cast<unsigned long long>(report.header->generation),
                static_cast<unsigned long long>(report.hydrated_regions),
                static_cast<unsigned long long>(report.header->geometry.region_count));
  std::printf("\n");
  return kExitOk;
}

absl::StatusOr<int> RunDump(const ParsedArgs& args) {
  BLKCLONE_ASSIGN_OR_RETURN(HeldDevice held, OpenMetadata(args, Access::kReadOnly));
  absl::StatusOr<std::string> dump =
      args.Has("--json") ? DumpJson(held.device) : DumpText(held.device);
  if (!dump.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("metadata device ", args.positional[0], ": ", dump.status().message()));
  std::fputs(dump->c_str(), stdout);
  if (!dump->empty() && dump->back() != '\n') std::fputs("\n", stdout);
  return kExitOk;
}

}  // namespace blkclone::cli

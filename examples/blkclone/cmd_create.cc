// blkclone create: validate a clone's table and devices, format its metadata,
// record it with its devices' identities. Every check runs before the one
// write (the format); the devices are arguments, so their faults are usage
// errors (exit status 2), except one that another command holds (1).
#include <array>
#include <cstdio>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "blkclone/clone_session.hpp"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "devices.hpp"
#include "held_device.hpp"
#include "state.hpp"

namespace blkclone::cli {
namespace {

constexpr absl::string_view kTableOptions[] = {"--metadata",     "--dest",
                                               "--source",       "--region-size",
                                               "--no-hydration", "--no-discard-passdown",
                                               "--threshold",    "--batch-size"};

// --region-size in sectors; checked in bytes, so that errors quote what was typed.
absl::StatusOr<uint64_t> RegionSectors(const ParsedArgs& args) {
  const std::string text = *args.Get("--region-size");
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize("--region-size", text));
  if (absl::Status rule = CheckRegionSize(bytes); !rule.ok())
    return absl::InvalidArgumentError(absl::StrCat("--region-size ", text, ": ", rule.message()));
  return bytes / kSectorSize;
}

// The table the arguments give: a table line, or the same said with options.
absl::StatusOr<CloneTable> TableFromArgs(const ParsedArgs& args) {
  const std::span<const std::string> line = std::span(args.positional).subspan(1);
  const bool has_options = std::any_of(std::begin(kTableOptions), std::end(kTableOptions),
                                       [&args](absl::string_view flag) { return args.Has(flag); });
  if (!line.empty()) {
    if (has_options)
      return absl::InvalidArgumentError(
          "give the table either as a table line or as options, not both");
    return ParseTable(line);
  }
  for (absl::string_view required : {"--metadata", "--dest", "--source", "--region-size"}) {
    if (!args.Has(required))
      return absl::InvalidArgumentError(absl::StrCat("missing ", required, " (or a table line)"));
  }
  CloneTable table{.metadata_device = *args.Get("--metadata"),
                   .destination_device = *args.Get("--dest"),
                   .source_device = *args.Get("--source"),
                   .no_hydration = args.Has("--no-hydration"),
                   .no_discard_passdown = args.Has("--no-discard-passdown")};
  BLKCLONE_ASSIGN_OR_RETURN(table.region_sectors, RegionSectors(args));
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t threshold, args.Number("--threshold", 1, 0, UINT32_MAX));
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t batch, args.Number("--batch-size", 1, 1, UINT32_MAX));
  table.hydration_threshold = static_cast<uint32_t>(threshold);
  table.hydration_batch_size = static_cast<uint32_t>(batch);
  return table;
}

// Records paths absolute, so that later commands find the devices from
// anywhere; a table line cannot hold whitespace.
absl::Status MakePathsAbsolute(CloneTable& table) {
  for (auto [role, path] : {std::pair{"metadata device", &table.metadata_device},
                            std::pair{"destination", &table.destination_device},
                            std::pair{"source", &table.source_device}}) {
    if (std::any_of(path->begin(), path->end(), absl::ascii_isspace))
      return absl::InvalidArgumentError(
          absl::StrCat(role, " ", *path, ": contains whitespace, which a table line cannot hold"));
    if (!IsRemoteName(*path)) *path = std::filesystem::absolute(*path).lexically_normal().string();
  }
  return absl::OkStatus();
}

// A library error that starts with a device's role ("metadata device: ...")
// names the device's path too.
absl::Status NamePath(const CloneTable& table, const absl::Status& status) {
  for (auto [role, path] : {std::pair{"metadata device", &table.metadata_device},
                            std::pair{"destination", &table.destination_device},
                            std::pair{"source", &table.source_device}}) {
    const std::string prefix = absl::StrCat(role, ": ");
    if (absl::StartsWith(status.message(), prefix))
      return absl::Status(status.code(), absl::StrCat(role, " ", *path, ": ",
                                                      status.message().substr(prefix.size())));
  }
  return status;
}

// Metadata that a clone of this state directory has is never taken over.
absl::Status CheckUnowned(const StateDir& dir, const std::string& path, AnyBlockDevice& meta) {
  BLKCLONE_ASSIGN_OR_RETURN(const StoredHeader header, PersistentMetadata::ReadHeader(meta));
  const std::string uuid = header.uuid.ToString();
  if (std::optional<std::string> owner = dir.FindByUuid(uuid))
    return absl::InvalidArgumentError(absl::StrCat("metadata device ", path,
                                                   ": holds the metadata of clone ", *owner,
                                                   " (uuid ", uuid, ")"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> RunCreate(const ParsedArgs& args) {
  if (args.positional.empty())
    return absl::InvalidArgumentError("expected NAME and a table line or options");
  const std::string& name = args.positional[0];
  BLKCLONE_RETURN_IF_ERROR(CheckName(name));
  BLKCLONE_ASSIGN_OR_RETURN(CloneTable table, TableFromArgs(args));
  BLKCLONE_RETURN_IF_ERROR(MakePathsAbsolute(table));
  BLKCLONE_RETURN_IF_ERROR(ApplyCephConf(
      args, std::array{&table.metadata_device, &table.destination_device, &table.source_device}));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_RETURN_IF_ERROR(dir.CheckNew(name));
  BLKCLONE_RETURN_IF_ERROR(CheckDistinctDevices(table));

  BLKCLONE_ASSIGN_OR_RETURN(HeldDevice meta,
                            OpenHeld("metadata device", table.metadata_device, backend,
                                     Access::kReadWrite, Hold::kExclusive));
  BLKCLONE_ASSIGN_OR_RETURN(HeldDevice dest,
                            OpenHeld("destination", table.destination_device, backend,
                                     Access::kReadWrite, Hold::kExclusive));
  BLKCLONE_ASSIGN_OR_RETURN(HeldDevice source, OpenHeld("source", table.source_device, backend,
                                                        Access::kReadOnly, Hold::kShared));
  BLKCLONE_RETURN_IF_ERROR(CheckTableLength(table, source.device.info().size));
  SessionDevices devices = {.source = std::move(source.device),
                            .destination = std::move(dest.device),
                            .metadata = std::move(meta.device)};
  const absl::StatusOr<MetadataOrigin> checked =
      CloneSession::CheckCreate(devices, table.region_size());
  if (!checked.ok()) return NamePath(table, checked.status());
  if (*checked == MetadataOrigin::kTakenOver)
    BLKCLONE_RETURN_IF_ERROR(CheckUnowned(dir, table.metadata_device, devices.metadata));

  // Checked again under the lock, which a failed create does not leave behind.
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, name, "create"));
  BLKCLONE_RETURN_IF_ERROR(dir.CheckNew(name));
  const CloneIdentities identities = {
      .metadata = meta.identity, .destination = dest.identity, .source = source.identity};
  absl::StatusOr<std::unique_ptr<CloneSession>> created = CloneSession::Create(
      std::move(devices), table.region_size(), {.hydration = {.start_enabled = false}});
  if (!created.ok()) return NamePath(table, created.status());
  CloneSession& session = **created;
  BLKCLONE_RETURN_IF_ERROR(session.Close());
  const CloneGeometry& geometry = session.metadata().geometry();
  table.length_sectors = geometry.source_size / kSectorSize;
  const CloneRecord record{.name = name,
                           .table = table,
                           .uuid = session.metadata().uuid().ToString(),
                           .identities = identities};
  BLKCLONE_RETURN_IF_ERROR(dir.Save(record));
  std::printf("created clone %s: %s source, %llu regions of %s\n", name.c_str(),
              HumanBytes(geometry.source_size).c_str(),
              static_cast<unsigned long long>(geometry.region_count),
              HumanBytes(geometry.region_size).c_str());
  std::printf("  table:    %s\n", FormatTable(table).c_str());
  if (session.origin() == MetadataOrigin::kTakenOver) {
    std::printf("  metadata: took over %s (uuid %s, %llu regions hydrated)\n",
                table.metadata_device.c_str(), record.uuid.c_str(),
                static_cast<unsigned long long>(session.metadata().map().CountSet()));
  } else {
    std::printf("  metadata: formatted %s (uuid %s)\n", table.metadata_device.c_str(),
                record.uuid.c_str());
  }
  return kExitOk;
}

}  // namespace blkclone::cli

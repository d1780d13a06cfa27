// blkclone finalize: once every region is hydrated, set the metadata's
// finished flag and hand the destination over.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "clone_devices.hpp"
#include "commands.hpp"

namespace blkclone::cli {
namespace {

void PrintHandOver(const CloneRecord& record) {
  std::printf(
      "the clone is finished: use %s directly; the metadata device %s is no longer "
      "needed (blkclone verify %s compares the destination with the source)\n",
      record.table.destination_device.c_str(), record.table.metadata_device.c_str(),
      record.name.c_str());
}

}  // namespace

absl::StatusOr<int> RunFinalize(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 1, 1, "NAME"));
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "finalize"));
  CloneDevices devices;
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, backend, Access::kReadWrite, CloneParts::kMetadata, devices));
  PersistentMetadata& metadata = *devices.metadata;
  if (metadata.finished()) {
    std::printf("clone %s was already finished\n", record.name.c_str());
    PrintHandOver(record);
    return kExitOk;
  }
  BLKCLONE_RETURN_IF_ERROR(
      OpenClone(record, backend, Access::kReadWrite, CloneParts::kMetadataAndDestination, devices));
  const CloneGeometry& geometry = metadata.geometry();
  const uint64_t remaining = geometry.region_count - metadata.map().CountSet();
  if (remaining > 0)
    return absl::UnavailableError(absl::StrCat(
        "clone ", record.name, ": not fully hydrated: ", remaining, " of ", geometry.region_count,
        " regions remain; run blkclone hydrate ", record.name, " first"));
  // The flag must not be committed before the data it vouches for is durable.
  BLKCLONE_RETURN_IF_ERROR(Flush(*devices.destination));
  BLKCLONE_RETURN_IF_ERROR(metadata.SetFinished());
  PrintHandOver(record);
  return kExitOk;
}

}  // namespace blkclone::cli

// blkclone finalize: once every region is hydrated, record the clone as
// finished (CloneSession::Finalize) and hand the destination over.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/clone_session.hpp"
#include "blkclone/status.hpp"
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
  if (absl::Status finalized = CloneSession::Finalize(metadata, *devices.destination);
      !finalized.ok()) {
    if (!absl::IsFailedPrecondition(finalized)) return finalized;
    return absl::UnavailableError(absl::StrCat("clone ", record.name, ": ", finalized.message(),
                                               "; run blkclone hydrate ", record.name, " first"));
  }
  PrintHandOver(record);
  return kExitOk;
}

}  // namespace blkclone::cli

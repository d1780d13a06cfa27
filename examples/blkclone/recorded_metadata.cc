// Identity checks between a clone's record and its metadata device.
#include "recorded_metadata.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::cli {

absl::StatusOr<std::unique_ptr<PersistentMetadata>> OpenRecordedMetadata(const CloneRecord& record,
                                                                         Backend backend,
                                                                         Access access) {
  const std::string& path = record.table.metadata_device;
  BLKCLONE_ASSIGN_OR_RETURN(AnyBlockDevice device,
                            OpenDevice("metadata device", path, backend, access));
  auto refuse = [&](absl::string_view problem) {
    return absl::FailedPreconditionError(absl::StrCat("metadata device ", path, ": ", problem));
  };
  absl::StatusOr<StoredHeader> header = PersistentMetadata::ReadHeader(device);
  if (absl::IsNotFound(header.status()))
    return refuse(absl::StrCat("blank: the metadata of clone ", record.name, " was wiped"));
  if (!header.ok()) return refuse(header.status().message());
  if (header->uuid.ToString() != record.uuid)
    return refuse(absl::StrCat("holds the metadata of another clone (uuid ",
                               header->uuid.ToString(), "; clone ", record.name, " has uuid ",
                               record.uuid, ")"));
  const CloneGeometry& geometry = header->geometry;
  if (geometry.region_size != record.table.region_size() ||
      geometry.source_size != *record.table.length_sectors * kSectorSize)
    return refuse(absl::StrCat("its geometry (region ", geometry.region_size, " bytes, source ",
                               geometry.source_size, " bytes) differs from the table of clone ",
                               record.name));
  absl::StatusOr<std::unique_ptr<PersistentMetadata>> metadata = PersistentMetadata::Open(
      std::move(device), geometry,
      {.read_only = access == Access::kReadOnly, .format_if_blank = false});
  if (!metadata.ok())
    return absl::Status(metadata.status().code(),
                        absl::StrCat("metadata device ", path, ": ", metadata.status().message()));
  return metadata;
}

}  // namespace blkclone::cli

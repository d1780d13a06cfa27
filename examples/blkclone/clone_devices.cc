// A recorded clone's devices opened and proven to be its own, in the order
// metadata device, destination, source.
#include "clone_devices.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "commands.hpp"
#include "held_device.hpp"

namespace blkclone::cli {
namespace {

// Opens one device of `record` and refuses it unless it is the one recorded
// at create; its claim, if any, goes to `devices`.
absl::StatusOr<AnyBlockDevice> OpenRecorded(absl::string_view role, const std::string& path,
                                            const DeviceIdentity& recorded, Backend backend,
                                            Access access, Hold hold, CloneDevices& devices) {
  BLKCLONE_ASSIGN_OR_RETURN(HeldDevice held, OpenHeld(role, path, backend, access, hold));
  if (const std::string change = recorded.ChangeTo(held.identity); !change.empty())
    return absl::FailedPreconditionError(
        absl::StrCat(role, " ", path, ": not the device recorded at create (", change, ")"));
  if (held.claim) devices.claims.push_back(std::move(held.claim));
  return std::move(held.device);
}

// The geometry that `record`'s table implies, without the destination's size.
CloneGeometry RecordedGeometry(const CloneRecord& record) {
  const uint64_t source_size = *record.table.length_sectors * kSectorSize;
  const uint64_t region_size = record.table.region_size();
  return CloneGeometry{.source_size = source_size,
                       .region_size = region_size,
                       .region_count = (source_size + region_size - 1) / region_size};
}

// The clone's metadata on `device`, refused unless it is the clone's: blank
// (wiped), another clone's UUID, or another geometry.
absl::StatusOr<std::unique_ptr<PersistentMetadata>> OpenMetadata(const CloneRecord& record,
                                                                 AnyBlockDevice device,
                                                                 Access access) {
  const std::string& path = record.table.metadata_device;
  auto refuse = [&](absl::string_view problem) {
    return absl::FailedPreconditionError(absl::StrCat("metadata device ", path, ": ", problem));
  };
  const CloneGeometry recorded = RecordedGeometry(record);
  if (const uint64_t needed = PersistentMetadata::RequiredSize(recorded);
      device.info().size < needed)
    return absl::FailedPreconditionError(absl::StrCat(
        "metadata device ", path, " is ", device.info().size, " bytes, smaller than the ", needed,
        " bytes the metadata of clone ", record.name, " needs"));
  absl::StatusOr<StoredHeader> header = PersistentMetadata::ReadHeader(device);
  if (absl::IsNotFound(header.status()))
    return refuse(absl::StrCat("blank: the metadata of clone ", record.name, " was wiped"));
  if (!header.ok()) return refuse(header.status().message());
  if (header->uuid.ToString() != record.uuid)
    return refuse(absl::StrCat("holds the metadata of another clone (uuid ",
                               header->uuid.ToString(), "; clone ", record.name, " has uuid ",
                               record.uuid, ")"));
  const CloneGeometry& geometry = header->geometry;
  if (geometry.region_size != recorded.region_size || geometry.source_size != recorded.source_size)
    return refuse(absl::StrCat("its geometry (region ", geometry.region_size, " bytes, source ",
                               geometry.source_size, " bytes) differs from the table of clone ",
                               record.name));
  absl::StatusOr<std::unique_ptr<PersistentMetadata>> metadata = PersistentMetadata::Open(
      std::move(device), geometry,
      {.read_only = access == Access::kReadOnly, .format_if_blank = false});
  if (!metadata.ok()) return refuse(metadata.status().message());
  return metadata;
}

absl::Status Open(const CloneRecord& record, Backend backend, Access access, CloneParts parts,
                  CloneDevices& devices) {
  const CloneTable& table = record.table;
  const CloneIdentities& identities = record.identities;
  if (devices.metadata == nullptr) {
    BLKCLONE_ASSIGN_OR_RETURN(
        AnyBlockDevice device,
        OpenRecorded("metadata device", table.metadata_device, identities.metadata, backend, access,
                     Hold::kExclusive, devices));
    BLKCLONE_ASSIGN_OR_RETURN(devices.metadata, OpenMetadata(record, std::move(device), access));
  }
  const CloneGeometry& geometry = devices.metadata->geometry();
  if (parts != CloneParts::kMetadata && !devices.destination) {
    const std::string& path = table.destination_device;
    BLKCLONE_ASSIGN_OR_RETURN(devices.destination,
                              OpenRecorded("destination", path, identities.destination, backend,
                                           access, Hold::kExclusive, devices));
    if (const uint64_t size = devices.destination->info().size; size != geometry.dest_size)
      return absl::FailedPreconditionError(absl::StrCat("destination ", path, " is ", size,
                                                        " bytes, not the ", geometry.dest_size,
                                                        " bytes recorded at create"));
  }
  if (parts == CloneParts::kAll && !devices.source) {
    const std::string& path = table.source_device;
    BLKCLONE_ASSIGN_OR_RETURN(
        devices.source, OpenRecorded("source", path, identities.source, backend, Access::kReadOnly,
                                     Hold::kShared, devices));
    if (const uint64_t size = devices.source->info().size; size != geometry.source_size)
      return absl::FailedPreconditionError(
          absl::StrCat("source ", path, " is ", size, " bytes, ",
                       size < geometry.source_size ? "shorter" : "longer", " than the ",
                       geometry.source_size, " bytes recorded at create"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status OpenClone(const CloneRecord& record, Backend backend, Access access, CloneParts parts,
                       CloneDevices& devices) {
  return AsFailure(Open(record, backend, access, parts, devices));
}

}  // namespace blkclone::cli

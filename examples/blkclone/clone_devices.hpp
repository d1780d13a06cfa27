// Opening the devices of a recorded clone for a command: each must be the
// device recorded at create (see DeviceIdentity), the metadata must be the
// clone's (its UUID and geometry), and each size must be the one recorded. The
// metadata device and the destination are held exclusively (see OpenHeld).
//
//   CloneDevices devices;
//   BLKCLONE_RETURN_IF_ERROR(
//       OpenClone(record, backend, Access::kReadOnly, CloneParts::kMetadata, devices));
//   uint64_t hydrated = devices.metadata->map().CountSet();
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/persistent_metadata.hpp"
#include "devices.hpp"
#include "state.hpp"

namespace blkclone::cli {

// Which devices a command opens besides the metadata device.
enum class CloneParts { kMetadata, kMetadataAndDestination, kAll };

struct CloneDevices {
  // Declared first, so destroyed last: released once the devices are closed.
  std::vector<internal::UniqueFd> claims;
  std::unique_ptr<PersistentMetadata> metadata;
  std::optional<AnyBlockDevice> destination;  // with kMetadataAndDestination or kAll
  std::optional<AnyBlockDevice> source;       // with kAll
};

// Opens those of `record`'s devices that `parts` names and `devices` lacks
// (the source read-only, the others with `access`), and its metadata, which is
// never formatted. Every error is one line naming the device and the problem,
// with a code for exit status 1.
absl::Status OpenClone(const CloneRecord& record, Backend backend, Access access, CloneParts parts,
                       CloneDevices& devices);

}  // namespace blkclone::cli

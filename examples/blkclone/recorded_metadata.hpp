// Opening the metadata of a recorded clone, refusing metadata that is not
// that clone's: blank (wiped), another clone's UUID, or another geometry.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "blkclone/persistent_metadata.hpp"
#include "devices.hpp"
#include "state.hpp"

namespace blkclone::cli {

// Opens `record`'s metadata device and its metadata (never formats).
absl::StatusOr<std::unique_ptr<PersistentMetadata>> OpenRecordedMetadata(const CloneRecord& record,
                                                                         Backend backend,
                                                                         Access access);

}  // namespace blkclone::cli

// Offline verification and inspection of PersistentMetadata, in the spirit of
// thin_check and thin_dump. Check reads every block and reports every problem
// with the block it is in; Dump prints the last committed state. Neither writes,
// except ClearNeedsCheck, which needs a passing Check first, and Repair.
//
//   blkclone::CheckReport report = blkclone::Check(device);
//   for (const std::string& problem : report.problems) std::cerr << problem << "\n";
//   if (report.ok) BLKCLONE_RETURN_IF_ERROR(blkclone::ClearNeedsCheck(device));
//   BLKCLONE_ASSIGN_OR_RETURN(std::string json, blkclone::DumpJson(device));
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/persistent_metadata.hpp"

namespace blkclone {

struct CheckReport {
  bool ok = false;  // no problems: the metadata opens and its committed state is intact
  // Damage or impossible values, each naming its block and what is wrong.
  std::vector<std::string> problems;
  // Harmless findings: traces of interrupted commits, needs_check being set.
  std::vector<std::string> notes;
  std::optional<StoredHeader> header;  // the current superblock, when one is usable
  uint64_t hydrated_regions = 0;       // in the last committed state
};

// Verifies checksums, magics, version, geometry and layout of both superblock
// slots and of every bitmap block slot, and that no bit past the last region is
// set. Reads only.
CheckReport Check(AnyBlockDevice& device);

// Clears needs_check if Check passes (else kFailedPrecondition with the problems),
// by a commit that also rewrites whatever Check noted.
[[nodiscard]] absl::Status ClearNeedsCheck(AnyBlockDevice& device);

// Makes metadata with problems usable again, accepting the loss Check reports:
// each damaged bitmap block takes its newest readable committed version (all
// zeroes if none), so regions only a lost version had read from the source
// again and are hydrated anew. Commits that state with needs_check cleared, and
// upgrades format 1 if it can. Returns the report of the Check before the
// repair. Fails when no superblock is usable (the geometry is unknown).
[[nodiscard]] absl::StatusOr<CheckReport> Repair(AnyBlockDevice& device);

// Geometry, UUID, generation, flags, usage and the hydrated regions of the last
// committed state as merged [first, last] ranges; kDataLoss if it is damaged.
[[nodiscard]] absl::StatusOr<std::string> DumpText(AnyBlockDevice& device);
// The same as one JSON object (keys listed in docs/metadata-format.md).
[[nodiscard]] absl::StatusOr<std::string> DumpJson(AnyBlockDevice& device);

}  // namespace blkclone

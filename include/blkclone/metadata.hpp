// The metadata contract behind a clone: the in-core hydration map plus the
// transactions that persist it.
//
// The engine drives a commit in three steps, on one thread at a time:
//   1. Seal(): regions marked so far form the transaction; later marks belong
//      to the next one.
//   2. The engine flushes the destination, so every sealed region's data is
//      durable (invariant I1: never commit a region before its data).
//   3. CommitSealed(): persists the sealed regions.
// MarkHydrated may run concurrently with all three.
//
//   InMemoryMetadata meta(geometry);
//   meta.MarkHydrated(3, 1);
//   meta.Seal(); /* flush destination */ BLKCLONE_RETURN_IF_ERROR(meta.CommitSealed());
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "blkclone/region_map.hpp"

namespace blkclone {

// The fixed shape of a clone, set when it is created.
struct CloneGeometry {
  uint64_t source_size = 0;  // bytes; also the clone's size
  uint64_t dest_size = 0;    // bytes, >= source_size
  uint64_t region_size = 0;  // bytes, a power of two
  uint64_t region_count = 0; // ceil(source_size / region_size)

  bool operator==(const CloneGeometry&) const = default;
};

struct MetadataUsage {
  uint64_t block_size = 4096;  // bytes
  uint64_t used_blocks = 0;
  uint64_t total_blocks = 0;
};

class Metadata {
 public:
  virtual ~Metadata() = default;

  virtual const CloneGeometry& geometry() const = 0;
  // The in-core map; readers use it without locks.
  virtual const RegionMap& map() const = 0;
  // Sets [first, first+count) in the map and records it for the next commit.
  virtual void MarkHydrated(uint64_t first, uint64_t count) = 0;
  // Step 1 of a commit (see above).
  virtual void Seal() = 0;
  // Step 3: persists what Seal() took. On error the sealed regions stay
  // pending and are retried by the next commit.
  [[nodiscard]] virtual absl::Status CommitSealed() = 0;
  // After a failed commit: forgets every uncommitted mark by re-reading the
  // last committed state into a new map, which map() returns from then on.
  // Maps handed out before stay valid (readers may still hold them).
  [[nodiscard]] virtual absl::Status ReloadCommitted() = 0;
  // Space use for the status line.
  virtual MetadataUsage usage() const = 0;
  // Whether the clone was finished: its destination replaced it, and no
  // clone may run on this metadata again.
  virtual bool finished() const { return false; }
  // Frees the in-core map's words once every region is hydrated (see
  // RegionMap::ReleaseIfComplete). The caller guarantees that nothing else
  // reads the map meanwhile; the engine calls it when no request is in flight.
  virtual void ReleaseMapIfComplete() = 0;
};

}  // namespace blkclone

// CloneListener: what a clone tells the scheduler that drives its background
// hydration (blkclone's Hydrator, or an application's own policy).
//
//   class MyScheduler : public blkclone::CloneListener { ... };
//   clone->SetListener(&scheduler);
//
// Threading: methods run on whatever thread the clone is on at that moment (a
// submitter, a device completion, the committer), never under the clone's
// locks; they must be quick and must not wait for the clone's requests.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace blkclone {

class CloneListener {
 public:
  virtual ~CloneListener() = default;
  // A read went to the source because `region` was not hydrated: a hint that
  // the region is wanted.
  virtual void OnUnhydratedRead(uint64_t region) = 0;
  // The last user request in flight completed.
  virtual void OnUserIdle() = 0;
  // Any hydration (background or triggered by a write) finished, having read
  // `copied_bytes` of data from the source (holes are zeroed, not copied).
  virtual void OnHydrationDone(bool background, uint64_t first_region, uint64_t region_count,
                               uint64_t copied_bytes, const absl::Status& status) = 0;
};

}  // namespace blkclone

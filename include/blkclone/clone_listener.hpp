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

// How a hydration ended: its regions, whether it was a background one and
// all holes of the source (zeroed, never copied), the data it read from the
// source, and its outcome.
struct HydrationEnd {
  bool background = false;
  uint64_t first_region = 0;
  uint64_t region_count = 0;
  bool zeroes_only = false;
  uint64_t copied_bytes = 0;
  absl::Status status;
};

class CloneListener {
 public:
  virtual ~CloneListener() = default;
  // A read went to the source because `region` was not hydrated: a hint that
  // the region is wanted.
  virtual void OnUnhydratedRead(uint64_t region) = 0;
  // The last user request in flight completed.
  virtual void OnUserIdle() = 0;
  // Any hydration (background or triggered by a write) finished.
  virtual void OnHydrationDone(const HydrationEnd& end) = 0;
};

}  // namespace blkclone

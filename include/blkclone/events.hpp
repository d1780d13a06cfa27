// CloneEvents: the one callback interface through which a clone reports what
// an operator must hear about. Every method has an empty default, so users
// override only what they watch.
//
//   struct Log : blkclone::CloneEvents {
//     void OnModeChange(blkclone::CloneMode mode, const absl::Status& why) override {
//       std::fprintf(stderr, "clone is now %s: %s\n", ModeName(mode).data(), why.ToString().c_str());
//     }
//   };
//
// Threading: methods run on the clone's internal threads, possibly several at
// once; they must return quickly and must not wait for the clone's requests.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace blkclone {

// The metadata modes of clone-semantics: rw normally; ro after a failed
// commit (reads work, nothing that needs the metadata changed does); Fail when
// even the committed state cannot be read back (every request fails).
enum class CloneMode { kReadWrite, kReadOnly, kFail };

// "rw", "ro" or "Fail", as the status line prints them.
absl::string_view ModeName(CloneMode mode);

class CloneEvents {
 public:
  virtual ~CloneEvents() = default;
  // Once per change; only ever towards ro, then Fail.
  virtual void OnModeChange(CloneMode /*mode*/, const absl::Status& /*cause*/) {}
  // Once, when every region is hydrated.
  virtual void OnHydrationComplete() {}
  // Background hydration gave up after repeated copy failures of `region`.
  virtual void OnHydrationStopped(uint64_t /*region*/, const absl::Status& /*cause*/) {}
  // Once, when the source failed to say where its holes are: from then on
  // everything is copied, as from a source that cannot tell.
  virtual void OnSourceAllocationUnknown(const absl::Status& /*cause*/) {}
};

}  // namespace blkclone

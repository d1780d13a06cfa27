// RangeLock: an asynchronous reader-writer lock over byte ranges.
//
// A read-modify-write of a partial block must not interleave with any other
// write to that block, or the bytes it puts back would undo the other write.
// So every data-changing operation holds its block range: whole-block writes
// in shared mode (they may overlap one another freely, like requests in flight
// on a disk), read-modify-writes in exclusive mode. Nothing blocks a thread:
// a holder that must wait is granted later, from the thread whose Release
// unblocks it. Grants are fair: a holder waits behind any earlier waiter it
// conflicts with, so a stream of shared holders cannot starve an exclusive one.
//
//   holder.begin = 0; holder.end = 4096; holder.exclusive = true;
//   holder.on_grant = [&] { StartReadModifyWrite(); };   // may run inside Acquire
//   lock.Acquire(holder);
//   ... lock.Release(holder);
#pragma once

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "blkclone/internal/mutex.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone::internal {

class RangeLock {
 public:
  // Owned by the caller; stays alive and unchanged from Acquire to Release.
  struct Holder {
    uint64_t begin = 0;  // [begin, end), non-empty
    uint64_t end = 0;
    bool exclusive = false;
    // Runs once, when the range is granted: inside Acquire, or inside the
    // Release of a conflicting holder. Never under the lock's mutex.
    absl::AnyInvocable<void() &&> on_grant;
    boost::intrusive::list_member_hook<> hook;
  };

  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  // Grants `holder` now if it conflicts with no granted holder and no earlier
  // waiter; otherwise queues it.
  void Acquire(Holder& holder);
  // Ends `holder`'s grant and grants the waiters that no longer conflict.
  void Release(Holder& holder);

 private:
  using HolderList = boost::intrusive::list<
      Holder,
      boost::intrusive::member_hook<Holder, boost::intrusive::list_member_hook<>, &Holder::hook>>;

  // True if `holder` may be granted now; `waiting_end` bounds the earlier waiters.
  bool CanGrant(const Holder& holder, HolderList::const_iterator waiting_end) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  HolderList granted_ ABSL_GUARDED_BY(mu_);
  HolderList waiting_ ABSL_GUARDED_BY(mu_);  // in arrival order
  uint64_t exclusive_granted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blkclone::internal

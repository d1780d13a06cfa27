// RangeLock: granting in arrival order, skipping past waiters that do not conflict.
#include "range_lock.hpp"

#include <utility>
#include <vector>

namespace blkclone::internal {
namespace {

bool Conflict(const RangeLock::Holder& a, const RangeLock::Holder& b) {
  return (a.exclusive || b.exclusive) && a.begin < b.end && b.begin < a.end;
}

}  // namespace

bool RangeLock::CanGrant(const Holder& holder, HolderList::const_iterator waiting_end) const {
  // Whole-block writes are the common case; with no exclusive holder they can
  // only conflict with an exclusive waiter.
  if (holder.exclusive || exclusive_granted_ > 0) {
    for (const Holder& granted : granted_) {
      if (Conflict(holder, granted)) return false;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_end; ++it) {
    if (Conflict(holder, *it)) return false;
  }
  return true;
}

void RangeLock::Acquire(Holder& holder) {
  {
    MutexLock lock(mu_);
    if (!CanGrant(holder, waiting_.end())) {
      waiting_.push_back(holder);
      return;
    }
    granted_.push_back(holder);
    if (holder.exclusive) ++exclusive_granted_;
  }
  auto grant = std::move(holder.on_grant);
  std::move(grant)();
}

void RangeLock::Release(Holder& holder) {
  std::vector<Holder*> ready;
  {
    MutexLock lock(mu_);
    granted_.erase(granted_.iterator_to(holder));
    if (holder.exclusive) --exclusive_granted_;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Holder& waiter = *it;
      if (!CanGrant(waiter, it)) {
        ++it;
        continue;
      }
      it = waiting_.erase(it);
      granted_.push_back(waiter);
      if (waiter.exclusive) ++exclusive_granted_;
      ready.push_back(&waiter);
    }
  }
  // A grant may complete its operation, and release and free its holder, at once.
  for (Holder* waiter : ready) {
    auto grant = std::move(waiter->on_grant);
    std::move(grant)();
  }
}

}  // namespace blkclone::internal

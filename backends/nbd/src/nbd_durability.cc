// NbdDurability: write and flush bookkeeping across connection losses.
#include "blkclone/internal/nbd_durability.hpp"

#include <algorithm>

namespace blkclone::internal {

uint64_t NbdDurability::writes() const {
  MutexLock lock(mu_);
  return writes_;
}

void NbdDurability::WriteDone() {
  MutexLock lock(mu_);
  ++writes_;
}

void NbdDurability::LinkLost() {
  MutexLock lock(mu_);
  at_risk_ = writes_;
}

bool NbdDurability::FlushDone(uint64_t covers) {
  MutexLock lock(mu_);
  const bool lost_some = covers > durable_ && at_risk_ > durable_;
  durable_ = std::max(durable_, covers);
  return !lost_some;
}

}  // namespace blkclone::internal

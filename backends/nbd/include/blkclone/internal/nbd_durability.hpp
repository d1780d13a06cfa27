// NbdDurability: keeps a flush from promising what a lost connection may have
// taken away. A server with a write cache that restarts loses the writes it
// acknowledged but had not flushed, and the client only sees a connection
// drop. So once a connection is lost while some completed writes are not yet
// covered by a successful flush, the flushes that cover those writes fail
// with kDataLoss: each such write is reported once, as Linux reports a
// writeback error to fsync once.
//
// Writes are numbered in completion order; a flush covers the writes
// completed before it was submitted. FUA writes are durable already and not
// counted. Thread-safe.
#pragma once

#include <cstdint>

#include "blkclone/internal/mutex.hpp"

namespace blkclone::internal {

class NbdDurability {
 public:
  // How many writes have completed: what a flush submitted now covers.
  uint64_t writes() const;
  void WriteDone();
  void LinkLost();
  // A flush covering the first `covers` writes succeeded at the server; false
  // when some of them may have been lost and were not reported yet.
  [[nodiscard]] bool FlushDone(uint64_t covers);

 private:
  mutable Mutex mu_;
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;  // writes flushed, or reported lost
  uint64_t at_risk_ ABSL_GUARDED_BY(mu_) = 0;  // writes completed before the last loss
};

}  // namespace blkclone::internal

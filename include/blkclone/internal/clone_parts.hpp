// The engine's bookkeeping objects, pooled and linked intrusively so the
// request path does not allocate.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/copier.hpp"
#include "blkclone/request.hpp"
#include "boost/intrusive/list.hpp"
#include "boost/intrusive/set.hpp"

namespace blkclone::internal {

struct Hydration;
struct UserIo;

// One piece of a user request: at most one region (a discard: whole regions).
struct Piece {
  void* owner = nullptr;  // the Clone
  UserIo* io = nullptr;
  uint64_t region = 0;
  uint64_t region_end = 0;  // discards: one past the last region
  Hydration* hydration = nullptr;  // a full-region write that is the hydration
  Request down;  // to the source or destination
  boost::intrusive::list_member_hook<> wait_hook;
};

using WaitList = boost::intrusive::list<
    Piece, boost::intrusive::member_hook<Piece, boost::intrusive::list_member_hook<>,
                                         &Piece::wait_hook>>;

// A user request in flight.
struct UserIo {
  Request* user = nullptr;
  std::atomic<uint32_t> pieces_left{0};
  std::atomic<bool> failed{false};
  absl::Status status;          // the first piece error; read after the last piece
  bool after_preflush = false;  // the data part waits for the flush in front
  boost::intrusive::list_member_hook<> hook;  // on the commit waiters
};

using UserIoList = boost::intrusive::list<
    UserIo, boost::intrusive::member_hook<UserIo, boost::intrusive::list_member_hook<>,
                                          &UserIo::hook>>;

// Regions [first_region, first_region + region_count) being hydrated, by a
// copy or by a full-region write.
struct Hydration {
  void* owner = nullptr;  // the Clone
  uint64_t first_region = 0;
  uint64_t region_count = 0;
  bool overwrite = false;
  bool background = false;  // started by the scheduler, not by a write
  bool zeroes_only = false;  // all holes of the source: zeroed, never copied
  WaitList waiters;  // writes and discards that wait for it
  CopyJob job;
  // A range with holes is hydrated in parts: copies of its data, zeroing of
  // its holes, planned from `extents`.
  std::vector<Extent> extents;
  std::vector<CopyJob> copies;
  std::vector<Request> zeroings;
  std::atomic<uint32_t> parts_left{0};
  std::atomic<bool> part_failed{false};
  absl::Status part_status;   // the first part error, read after the last part
  uint64_t copied_bytes = 0;  // of data read from the source
  uint64_t zeroed_bytes = 0;  // of holes zeroed on the destination
  boost::intrusive::set_member_hook<> index_hook;
};

// A kBlockStatus of the clone: one question per run of hydrated (to the
// destination) or unhydrated (to the source) regions.
struct StorageQuery {
  struct Part {
    Request request;
    std::vector<Extent> extents;
  };
  void* owner = nullptr;  // the Clone
  UserIo* io = nullptr;
  std::vector<Part> parts;
  std::atomic<uint32_t> parts_left{0};
  std::atomic<bool> failed{false};
  absl::Status status;  // the first error, read after the last part
};

struct HydrationKeyLess {
  bool operator()(uint64_t region, const Hydration& h) const { return region < h.first_region; }
  bool operator()(const Hydration& h, uint64_t region) const { return h.first_region < region; }
};

struct HydrationOrder {
  bool operator()(const Hydration& a, const Hydration& b) const {
    return a.first_region < b.first_region;
  }
};

// Hydrations in flight, ordered by first region; they never overlap.
using HydrationIndex = boost::intrusive::set<
    Hydration, boost::intrusive::compare<HydrationOrder>,
    boost::intrusive::member_hook<Hydration, boost::intrusive::set_member_hook<>,
                                  &Hydration::index_hook>>;

}  // namespace blkclone::internal

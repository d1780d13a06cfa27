// NBD_CMD_BLOCK_STATUS replies: each metadata context's answer for the
// requested range as runs of status flags, checked against the range, and
// encoded as one NBD_REPLY_TYPE_BLOCK_STATUS chunk per context.
//
//   BLKCLONE_ASSIGN_OR_RETURN(std::vector<NbdStatusRun> runs,
//                             AllocationRuns(extents, offset, length, block));
//   const NbdContextAnswer answers[] = {{NbdContext::kAllocation, runs}};
//   EncodeBlockStatusReply(cookie, answers, spec.max_status_descriptors, out);
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/internal/nbd_meta_context.hpp"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/nbd_server.hpp"
#include "blkclone/request.hpp"

namespace blkclone::internal {

// Consecutive from the request's offset; a request's length fits in 32 bits,
// and so does every run.
struct NbdStatusRun {
  uint32_t length = 0;
  uint32_t flags = 0;

  bool operator==(const NbdStatusRun&) const = default;
};

// base:allocation from a device's kBlockStatus answer: a hole is
// NBD_STATE_HOLE | NBD_STATE_ZERO, data 0. kInternal unless the extents cover
// [offset, offset + length) exactly, in whole `block`s.
[[nodiscard]] absl::StatusOr<std::vector<NbdStatusRun>> AllocationRuns(
    std::span<const Extent> extents, uint64_t offset, uint32_t length, uint64_t block);
// blkclone:hydrated from the hydration hook's answer: a hydrated run has
// NBD_STATE_HYDRATED. The same check.
[[nodiscard]] absl::StatusOr<std::vector<NbdStatusRun>> HydrationRuns(
    std::span<const NbdHydrationRun> runs, uint64_t offset, uint32_t length, uint64_t block);

struct NbdContextAnswer {
  NbdContext context;
  std::span<const NbdStatusRun> runs;
};

// Appends a successful block status reply: a chunk per answer, in order, the
// last flagged done, each with at most `max_descriptors` descriptors (the
// client asks again for the rest).
void EncodeBlockStatusReply(uint64_t cookie, std::span<const NbdContextAnswer> answers,
                            uint32_t max_descriptors, nbd::WireWriter& out);

}  // namespace blkclone::internal

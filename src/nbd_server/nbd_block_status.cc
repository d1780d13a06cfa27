// Block status answers: checked runs of flags, and their reply chunks.
#include "blkclone/internal/nbd_block_status.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace blkclone::internal {
namespace {

// Runs of `flags_of(item)` over `items`, which must cover [offset, offset +
// length) exactly, in whole `block`s; neighbours with the same flags merge.
template <class Item, class FlagsOf>
absl::StatusOr<std::vector<NbdStatusRun>> Runs(std::span<const Item> items, uint64_t offset,
                                               uint32_t length, uint64_t block,
                                               absl::string_view source, FlagsOf flags_of) {
  const uint64_t end = offset + length;
  std::vector<NbdStatusRun> runs;
  uint64_t at = offset;
  for (const Item& item : items) {
    if (item.offset != at || item.length == 0 || item.length % block != 0 || item.length > end - at)
      break;
    const uint32_t flags = flags_of(item);
    if (!runs.empty() && runs.back().flags == flags) {
      runs.back().length += static_cast<uint32_t>(item.length);
    } else {
      runs.push_back({.length = static_cast<uint32_t>(item.length), .flags = flags});
    }
    at += item.length;
  }
  if (at != end)
    return absl::InternalError(absl::StrCat(source, " does not describe offset ", at,
                                            " of the range at offset ", offset, " length ", length,
                                            " in whole blocks of ", block, " bytes"));
  return runs;
}

}  // namespace

absl::StatusOr<std::vector<NbdStatusRun>> AllocationRuns(std::span<const Extent> extents,
                                                         uint64_t offset, uint32_t length,
                                                         uint64_t block) {
  return Runs(
      extents, offset, length, block, "the device's block status",
      [](const Extent& extent) { return extent.hole ? nbd::kStateHole | nbd::kStateZero : 0; });
}

absl::StatusOr<std::vector<NbdStatusRun>> HydrationRuns(std::span<const NbdHydrationRun> runs,
                                                        uint64_t offset, uint32_t length,
                                                        uint64_t block) {
  return Runs(runs, offset, length, block, "the hydration map",
              [](const NbdHydrationRun& run) { return run.hydrated ? nbd::kStateHydrated : 0; });
}

void EncodeBlockStatusReply(uint64_t cookie, std::span<const NbdContextAnswer> answers,
                            uint32_t max_descriptors, nbd::WireWriter& out) {
  for (size_t i = 0; i < answers.size(); ++i) {
    const std::span<const NbdStatusRun> runs =
        answers[i].runs.first(std::min<size_t>(answers[i].runs.size(), max_descriptors));
    out.U32(nbd::kStructuredReplyMagic)
        .U16(i + 1 == answers.size() ? nbd::kReplyFlagDone : 0)
        .U16(nbd::kReplyTypeBlockStatus)
        .U64(cookie)
        .U32(static_cast<uint32_t>(4 + runs.size() * nbd::kStatusDescriptorSize))
        .U32(ContextId(answers[i].context));
    for (const NbdStatusRun& run : runs) out.U32(run.length).U32(run.flags);
  }
}

}  // namespace blkclone::internal

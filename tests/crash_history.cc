// BlockOracle: the values a block may hold, from a history of requests.
#include "crash_history.hpp"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace blkclone::testing {
namespace {

uint64_t Mix(uint64_t x) {
  x = (x ^ (x >> 31)) * 0x7fb5d329728ea185;
  x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44d;
  return x ^ (x >> 33);
}

uint64_t BlockWord(int64_t value, uint64_t block, uint64_t word) {
  return Mix(static_cast<uint64_t>(value) * 1'000'003 + block * 7919 + word);
}

constexpr uint64_t kWords = kCrashBlock / 8;

bool SetsBlocks(const UserOp& op) { return ModifiesData(op.op) && op.blocks > 0; }
bool IsFlush(const UserOp& op) { return op.op == Op::kFlush || (op.flags & kPreflush) != 0; }

}  // namespace

void FillBlock(int64_t value, uint64_t block, std::byte* out) {
  for (uint64_t w = 0; w < kWords; ++w) {
    const uint64_t word = BlockWord(value, block, w);
    std::memcpy(out + w * 8, &word, 8);
  }
}

std::vector<std::byte> WriteData(const UserOp& op) {
  std::vector<std::byte> data(op.blocks * kCrashBlock);
  for (uint64_t b = 0; b < op.blocks; ++b)
    FillBlock(op.value, op.first_block + b, data.data() + b * kCrashBlock);
  return data;
}

void SetDiscardedBlocks(uint64_t offset, uint64_t length, uint64_t region_size, uint64_t size,
                        UserOp& op) {
  const uint64_t begin = (offset + region_size - 1) / region_size * region_size;
  const uint64_t end =
      offset + length == size ? size : (offset + length) / region_size * region_size;
  op.first_block = begin / kCrashBlock;
  op.blocks = end > begin ? (end - begin) / kCrashBlock : 0;
  op.value = kAnything;
}

BlockOracle::BlockOracle(const std::vector<UserOp>& ops, std::span<const std::byte> source)
    : ops_(ops), source_(source), durable_from_(ops.size(), kNever) {
  // Flushes by submission; a write is covered by those submitted after it completed.
  struct FlushTicks {
    uint64_t submitted, settles_at;
  };
  std::vector<FlushTicks> flushes;
  for (const UserOp& op : ops) {
    if (IsFlush(op) && op.ok) flushes.push_back({op.submitted, op.acknowledged + 1});
  }
  std::sort(flushes.begin(), flushes.end(),
            [](const FlushTicks& a, const FlushTicks& b) { return a.submitted < b.submitted; });
  std::vector<uint64_t> earliest_after(flushes.size() + 1, kNever);  // suffix minimum
  for (size_t i = flushes.size(); i-- > 0;)
    earliest_after[i] = std::min(earliest_after[i + 1], flushes[i].settles_at);
  covering_.resize(source.size() / kCrashBlock);
  for (size_t i = 0; i < ops.size(); ++i) {
    const UserOp& op = ops[i];
    if (!SetsBlocks(op)) continue;
    for (uint64_t b = op.first_block; b < op.first_block + op.blocks; ++b)
      covering_[b].push_back(static_cast<uint32_t>(i));
    if (!op.ok) continue;
    const size_t next =
        std::upper_bound(flushes.begin(), flushes.end(), op.acknowledged,
                         [](uint64_t tick, const FlushTicks& f) { return tick < f.submitted; }) -
        flushes.begin();
    durable_from_[i] = earliest_after[next];
    if ((op.flags & kFua) != 0) durable_from_[i] = std::min(durable_from_[i], op.acknowledged + 1);
  }
}

template <class SettledAt>
bool BlockOracle::Allows(uint64_t block, uint64_t settled_before, uint64_t submitted_before,
                         SettledAt settled_at, const std::byte* content) const {
  // Values that completed before the latest settled overwrite started are gone.
  uint64_t overwritten_before = 0;
  bool settled = false;
  for (uint32_t i : covering_[block]) {
    if (settled_at(i) <= settled_before) {
      overwritten_before = std::max(overwritten_before, ops_[i].submitted);
      settled = true;
    }
  }
  if (!settled && Matches(kSourceValue, block, content)) return true;
  for (uint32_t i : covering_[block]) {
    const UserOp& op = ops_[i];
    if (op.submitted >= submitted_before) continue;
    if (settled && op.acknowledged < overwritten_before) continue;
    if (Matches(op.value, block, content)) return true;
  }
  return false;
}

bool BlockOracle::CrashAllows(uint64_t block, uint64_t tick, const std::byte* content) const {
  return Allows(
      block, tick, tick, [this](uint32_t i) { return durable_from_[i]; }, content);
}

bool BlockOracle::ReadAllows(const UserOp& read, uint64_t block, const std::byte* content,
                             bool strict) const {
  return Allows(
      block, read.submitted, read.acknowledged,
      [this, strict](uint32_t i) {
        const UserOp& op = ops_[i];
        if (!strict) return durable_from_[i];
        return op.ok ? op.acknowledged + 1 : kNever;
      },
      content);
}

uint64_t BlockOracle::FirstBadBlockOfRead(const UserOp& read, bool strict) const {
  for (uint64_t b = 0; b < read.blocks; ++b) {
    if (!ReadAllows(read, read.first_block + b, read.read_data.data() + b * kCrashBlock, strict))
      return read.first_block + b;
  }
  return kNever;
}

std::string BlockOracle::Explain(uint64_t block, const std::byte* content) const {
  auto describe = [this](const UserOp& op) {
    return absl::StrCat(OpName(op.op), " flags ", op.flags, " ticks ", op.submitted, "-",
                        op.acknowledged, op.ok ? " ok" : " failed");
  };
  std::string text =
      absl::StrCat("\n  the source's data",
                   Matches(kSourceValue, block, content) ? " <- the block holds this" : "");
  for (uint32_t i : covering_[block]) {
    const UserOp& op = ops_[i];
    absl::StrAppend(&text, "\n  ", describe(op), ", durable from tick ", durable_from_[i],
                    op.value != kAnything && Matches(op.value, block, content)
                        ? " <- the block holds this"
                        : "");
  }
  for (const UserOp& op : ops_) {
    if (IsFlush(op)) absl::StrAppend(&text, "\n  flush or PREFLUSH: ", describe(op));
  }
  return text;
}

bool BlockOracle::Matches(int64_t value, uint64_t block, const std::byte* content) const {
  switch (value) {
    case kAnything:
      return true;
    case kSourceValue:
      return std::memcmp(source_.data() + block * kCrashBlock, content, kCrashBlock) == 0;
    case kZeroValue:
      return std::all_of(content, content + kCrashBlock,
                         [](std::byte b) { return b == std::byte{0}; });
    default:
      for (uint64_t w = 0; w < kWords; ++w) {
        uint64_t word;
        std::memcpy(&word, content + w * 8, 8);
        if (word != BlockWord(value, block, w)) return false;
      }
      return true;
  }
}

}  // namespace blkclone::testing

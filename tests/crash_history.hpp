// What users asked of a clone during a recorded run, stamped with the crash
// recorders' clock, and what each 512-byte block may then hold
// (clone-semantics I2, I3), whether the requests ran one at a time or at once.
//
// A block may hold the source's data or the value of any request that covers
// it and was submitted before the crash (or before the read completed), except
// a value that a settled request overwrote: one that covers the block and was
// submitted after the value's request had completed. At a crash, settled means
// durable: acknowledged with FUA, or acknowledged before a FLUSH (or PREFLUSH)
// was submitted that completed before the crash. For a read it means durable
// before the read was submitted, or, where no fault may have made the clone
// forget acknowledged writes (`strict`), just completed before it.
//
//   BlockOracle oracle(history.ops(), source_bytes);
//   if (!oracle.CrashAllows(block, tick, image.data() + block * kCrashBlock)) ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/recording_device.hpp"

namespace blkclone::testing {

inline constexpr uint64_t kCrashBlock = 512;
// Block values: a request's own value (>= 0), or one of these.
inline constexpr int64_t kSourceValue = -1;
inline constexpr int64_t kAnything = -2;  // discarded: any content is right
inline constexpr int64_t kZeroValue = -3;
// The tick of something that did not happen.
inline constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct UserOp {
  Op op = Op::kWrite;
  uint8_t flags = kNoFlags;
  uint64_t first_block = 0, blocks = 0;  // the blocks it sets (or, for reads, reads)
  int64_t value = 0;                     // kAnything for discards, kZeroValue for write-zeroes
  uint64_t submitted = 0, acknowledged = kNever;
  bool ok = false;
  std::vector<std::byte> read_data = {};  // reads: what came back
};

// The content of `block` that a request with `value` >= 0 writes there.
void FillBlock(int64_t value, uint64_t block, std::byte* out);
// What the write `op` writes: FillBlock of each of its blocks.
std::vector<std::byte> WriteData(const UserOp& op);

// The blocks of a discard of [offset, offset + length) on a clone of `size`
// bytes: the regions it covers whole (the short last one when it reaches the end).
void SetDiscardedBlocks(uint64_t offset, uint64_t length, uint64_t region_size, uint64_t size,
                        UserOp& op);

// Runs `op` on `device` (a clone of `region_size` regions) as a request for
// its blocks and waits; stamps it with `clock` before the request and after
// its completion, and notes the outcome (and what a read returned). Sets what
// the op decides: write-zeroes' value, a discard's blocks (the regions it
// covers whole) and value, no blocks for a flush.
template <BlockDevice D>
void SubmitStamped(D& device, uint64_t region_size, RecordingClock& clock, UserOp& op) {
  const uint64_t offset = op.first_block * kCrashBlock, length = op.blocks * kCrashBlock;
  std::vector<std::byte> data;
  if (op.op == Op::kWrite) data = WriteData(op);
  if (op.op == Op::kRead) op.read_data.resize(length);
  if (op.op == Op::kWriteZeroes) op.value = kZeroValue;
  if (op.op == Op::kDiscard)
    SetDiscardedBlocks(offset, length, region_size, device.info().size, op);
  if (op.op == Op::kFlush) op.blocks = 0;
  absl::Status status;
  op.submitted = clock.Tick();
  switch (op.op) {
    case Op::kWrite:
      status = WriteAt(device, offset, data, op.flags);
      break;
    case Op::kWriteZeroes:
      status = WriteZeroes(device, offset, length, op.flags);
      break;
    case Op::kDiscard:
      status = Discard(device, offset, length);
      break;
    case Op::kFlush:
      status = Flush(device);
      break;
    case Op::kRead:
      status = ReadAt(device, offset, op.read_data);
      break;
    case Op::kBlockStatus:
      status = DescribeAllocation(device, offset, length).status();
      break;
  }
  op.acknowledged = clock.Tick();
  op.ok = status.ok();
}

// The requests of a run, appended from any thread.
class History {
 public:
  void Add(UserOp op) {
    internal::MutexLock lock(mu_);
    ops_.push_back(std::move(op));
  }
  std::vector<UserOp> ops() const {
    internal::MutexLock lock(mu_);
    return ops_;
  }

 private:
  mutable internal::Mutex mu_;
  std::vector<UserOp> ops_ ABSL_GUARDED_BY(mu_);
};

class BlockOracle {
 public:
  // `source` is the source's content; both must outlive the oracle.
  BlockOracle(const std::vector<UserOp>& ops, std::span<const std::byte> source);

  // Whether `block` may read as `content` after a crash at `tick`.
  bool CrashAllows(uint64_t block, uint64_t tick, const std::byte* content) const;
  // Whether the read `read` (one of the ops) may have returned `content` for `block`.
  bool ReadAllows(const UserOp& read, uint64_t block, const std::byte* content, bool strict) const;
  // The first block of `read` whose content no value allows, or kNever.
  uint64_t FirstBadBlockOfRead(const UserOp& read, bool strict) const;
  // The requests that set `block`, the flushes, and which value `content` is.
  std::string Explain(uint64_t block, const std::byte* content) const;

 private:
  // `settled_at(op)` is the first tick from which op counts as settled.
  template <class SettledAt>
  bool Allows(uint64_t block, uint64_t settled_before, uint64_t submitted_before,
              SettledAt settled_at, const std::byte* content) const;
  bool Matches(int64_t value, uint64_t block, const std::byte* content) const;

  const std::vector<UserOp>& ops_;
  std::span<const std::byte> source_;
  std::vector<uint64_t> durable_from_;           // per op: first tick it is durable at
  std::vector<std::vector<uint32_t>> covering_;  // per block: ops that set it
};

}  // namespace blkclone::testing

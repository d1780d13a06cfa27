// ByteIo: byte-addressed asynchronous I/O over a block device.
//
// A file is addressed in bytes, a block device in logical blocks. ByteIo
// bridges the two. Ranges aligned to the logical block size go straight
// through, cut at the device's transfer limit. A write that starts or ends
// inside a block reads those edge blocks, merges, and writes whole blocks,
// holding its blocks exclusively in a RangeLock meanwhile so that no other
// write to them lands in between and is undone (range_lock.hpp). Buffers handed
// to the device are ByteIo's own, allocated with the device's memory alignment:
// callers' buffers need no alignment and are free again when a call returns.
//
//   internal::ByteIo io(device);
//   io.Write(777, data, [](absl::Status s) { ... });
//   io.Read(0, 100, [](absl::Status s, std::span<const std::byte> bytes) { ... });
//
// Threading: call from any thread. Completions run on the device's threads,
// or inside the call when the device completes inline. Ranges must lie within
// the device; reads are not ordered against writes in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "blkclone/any_block_device.hpp"
#include "fanout.hpp"
#include "range_lock.hpp"

namespace blkclone::internal {

class ByteIo {
 public:
  // `bytes` are valid only during the call.
  using ReadDone = absl::AnyInvocable<void(absl::Status, std::span<const std::byte> bytes) &&>;

  // `device` must outlive the ByteIo, which must outlive every call in flight.
  explicit ByteIo(AnyBlockDevice& device);

  void Read(uint64_t offset, uint64_t length, ReadDone done);
  // Copies `data` before returning.
  void Write(uint64_t offset, std::span<const std::byte> data, Done done);
  // Makes the range read back as zeroes, discarding the whole blocks in it (and
  // writing zeroes over them too where the device's discards do not zero).
  // kUnimplemented if the device can neither discard nor write zeroes.
  void PunchHole(uint64_t offset, uint64_t length, Done done);
  // Makes the range read back as zeroes with write-zeroes on the whole blocks;
  // kUnimplemented if the device cannot write zeroes.
  void ZeroRange(uint64_t offset, uint64_t length, Done done);
  // A device flush: every write completed before the call becomes durable.
  void Flush(Done done);

 private:
  struct Change;

  // Requests of `op` over [begin, end), at most max_chunk_ bytes each, with
  // `buffer` holding the bytes from `begin` on.
  std::vector<Request> Chunks(Op op, uint64_t begin, uint64_t end, std::byte* buffer) const;
  // Zeroes partial edge blocks by writing zero bytes, whole blocks with ZeroBlocks.
  void Zero(uint64_t offset, uint64_t length, bool discard, bool write_zeroes, Done done);
  // Discards and/or writes zeroes over whole blocks [begin, end), holding them shared.
  void ZeroBlocks(uint64_t begin, uint64_t end, bool discard, bool write_zeroes, Done done);
  void ReadEdges(Change* change);
  void WriteBlocks(Change* change);
  void Finish(Change* change, absl::Status status);

  uint64_t AlignDown(uint64_t offset) const { return offset - offset % block_; }
  uint64_t AlignUp(uint64_t offset) const { return AlignDown(offset + block_ - 1); }

  AnyBlockDevice& device_;
  const uint64_t block_;      // logical block size
  const uint64_t max_chunk_;  // most bytes in one read or write request
  const size_t alignment_;    // of every buffer given to the device
  RangeLock lock_;
};

}  // namespace blkclone::internal

// ByteIo: chunking, read-modify-write of partial blocks, and zeroing.
#include "byte_io.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "blkclone/aligned_buffer.hpp"

namespace blkclone::internal {
namespace {

uint64_t MaxChunk(const DeviceInfo& info) {
  if (info.max_transfer == 0) return std::numeric_limits<uint64_t>::max();
  return info.max_transfer - info.max_transfer % info.logical_block_size;
}

void SubmitOne(AnyBlockDevice& device, Request request, Done done) {
  std::vector<Request> requests;
  requests.push_back(request);
  SubmitAll(device, std::move(requests), std::move(done));
}

}  // namespace

// A write or a zeroing of whole blocks, from its lock request to its answer.
struct ByteIo::Change {
  uint64_t offset = 0;  // the caller's bytes: [offset, offset + length)
  uint64_t length = 0;
  AlignedBuffer data;  // writes: the blocks [holder.begin, holder.end)
  // Zeroing: discard the blocks, then write zeroes over them (either or both).
  bool discard = false;
  bool write_zeroes = false;
  Done done;
  RangeLock::Holder holder;
};

ByteIo::ByteIo(AnyBlockDevice& device)
    : device_(device),
      block_(device.info().logical_block_size),
      max_chunk_(MaxChunk(device.info())),
      alignment_(
          std::max<size_t>(device.info().memory_alignment, __STDCPP_DEFAULT_NEW_ALIGNMENT__)) {}

std::vector<Request> ByteIo::Chunks(Op op, uint64_t begin, uint64_t end, std::byte* buffer) const {
  std::vector<Request> requests;
  requests.reserve((end - begin) / max_chunk_ + 1);
  for (uint64_t position = begin; position < end;) {
    const uint64_t length = std::min(max_chunk_, end - position);
    requests.push_back(Request::Make(op, kNoFlags, position, length, buffer + (position - begin)));
    position += length;
  }
  return requests;
}

void ByteIo::Read(uint64_t offset, uint64_t length, ReadDone done) {
  const uint64_t begin = AlignDown(offset);
  const uint64_t end = AlignUp(offset + length);
  AlignedBuffer data(end - begin, alignment_);
  std::vector<Request> requests = Chunks(Op::kRead, begin, end, data.data());
  SubmitAll(device_, std::move(requests),
            [data = std::move(data), skip = offset - begin, length,
             done = std::move(done)](absl::Status status) mutable {
              if (!status.ok()) return std::move(done)(std::move(status), {});
              std::move(done)(absl::OkStatus(), {data.data() + skip, length});
            });
}

void ByteIo::Write(uint64_t offset, std::span<const std::byte> data, Done done) {
  if (data.empty()) return std::move(done)(absl::OkStatus());
  auto* change = new Change;
  change->offset = offset;
  change->length = data.size();
  change->done = std::move(done);
  RangeLock::Holder& holder = change->holder;
  holder.begin = AlignDown(offset);
  holder.end = AlignUp(offset + data.size());
  holder.exclusive = holder.begin != offset || holder.end != offset + data.size();
  change->data = AlignedBuffer(holder.end - holder.begin, alignment_);
  std::memcpy(change->data.data() + (offset - holder.begin), data.data(), data.size());
  holder.on_grant = [this, change] {
    if (change->holder.exclusive) return ReadEdges(change);
    WriteBlocks(change);
  };
  lock_.Acquire(holder);
}

void ByteIo::ReadEdges(Change* change) {
  const uint64_t begin = change->holder.begin;
  const uint64_t end = change->holder.end;
  const uint64_t user_end = change->offset + change->length;
  const bool head = change->offset != begin;
  const bool tail = user_end != end;
  // When the bytes lie inside one block, that block is both edges: read it once.
  const uint64_t tail_slot = head && end - begin == block_ ? 0 : block_;
  AlignedBuffer edges(2 * block_, alignment_);
  std::vector<Request> requests;
  if (head) requests.push_back(Request::Read(begin, {edges.data(), block_}));
  if (tail && tail_slot != 0)
    requests.push_back(Request::Read(end - block_, {edges.data() + tail_slot, block_}));
  SubmitAll(device_, std::move(requests),
            [this, change, edges = std::move(edges), head, tail, tail_slot, begin, end,
             user_end](absl::Status status) {
              if (!status.ok()) return Finish(change, std::move(status));
              std::byte* data = change->data.data();
              if (head) std::memcpy(data, edges.data(), change->offset - begin);
              if (tail) {
                const std::byte* tail_block = edges.data() + tail_slot;
                std::memcpy(data + (user_end - begin), tail_block + (user_end - (end - block_)),
                            end - user_end);
              }
              WriteBlocks(change);
            });
}

void ByteIo::WriteBlocks(Change* change) {
  SubmitAll(device_,
            Chunks(Op::kWrite, change->holder.begin, change->holder.end, change->data.data()),
            [this, change](absl::Status status) { Finish(change, std::move(status)); });
}

void ByteIo::Finish(Change* change, absl::Status status) {
  std::unique_ptr<Change> owned(change);
  lock_.Release(owned->holder);
  std::move(owned->done)(std::move(status));
}

void ByteIo::PunchHole(uint64_t offset, uint64_t length, Done done) {
  const Capabilities& caps = device_.info().caps;
  // Zeroes must follow a discard unless the device promises them.
  const bool zeroes_needed = !(caps.discard && caps.discard_zeroes_data);
  if (zeroes_needed && !caps.write_zeroes)
    return std::move(done)(absl::UnimplementedError(
        "punch hole: the device can neither discard to zeroes nor write zeroes"));
  Zero(offset, length, caps.discard, zeroes_needed, std::move(done));
}

void ByteIo::ZeroRange(uint64_t offset, uint64_t length, Done done) {
  if (!device_.info().caps.write_zeroes)
    return std::move(done)(absl::UnimplementedError("zero range: the device cannot write zeroes"));
  Zero(offset, length, /*discard=*/false, /*write_zeroes=*/true, std::move(done));
}

void ByteIo::Zero(uint64_t offset, uint64_t length, bool discard, bool write_zeroes, Done done) {
  const uint64_t end = offset + length;
  // Partial blocks at either end get zero bytes written into them (a
  // read-modify-write); the device zeroes the whole blocks between.
  const uint64_t head_end = std::min(end, AlignUp(offset));
  const uint64_t tail_begin = std::max(head_end, AlignDown(end));
  const size_t parts = (offset < head_end) + (head_end < tail_begin) + (tail_begin < end);
  if (parts == 0) return std::move(done)(absl::OkStatus());
  Join* join = Join::Create(parts, std::move(done));
  const auto arrive = [join](absl::Status status) { join->Arrive(std::move(status)); };
  if (offset < head_end) Write(offset, std::vector<std::byte>(head_end - offset), arrive);
  if (head_end < tail_begin) ZeroBlocks(head_end, tail_begin, discard, write_zeroes, arrive);
  if (tail_begin < end) Write(tail_begin, std::vector<std::byte>(end - tail_begin), arrive);
}

void ByteIo::ZeroBlocks(uint64_t begin, uint64_t end, bool discard, bool write_zeroes, Done done) {
  auto* change = new Change;
  change->offset = begin;
  change->length = end - begin;
  change->discard = discard;
  change->write_zeroes = write_zeroes;
  change->done = std::move(done);
  change->holder.begin = begin;
  change->holder.end = end;
  // One after the other: requests in flight together have no order, and the
  // discard must not land after the zeroes.
  change->holder.on_grant = [this, change] {
    const auto finish = [this, change](absl::Status status) { Finish(change, std::move(status)); };
    const auto zero = [this, change, finish](absl::Status status) {
      if (!status.ok() || !change->write_zeroes) return finish(std::move(status));
      SubmitOne(device_, Request::WriteZeroes(change->offset, change->length), finish);
    };
    if (!change->discard) return zero(absl::OkStatus());
    SubmitOne(device_, Request::Discard(change->offset, change->length), zero);
  };
  lock_.Acquire(change->holder);
}

void ByteIo::Flush(Done done) { SubmitOne(device_, Request::Flush(), std::move(done)); }

}  // namespace blkclone::internal

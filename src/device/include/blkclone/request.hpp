// The request object every BlockDevice accepts.
//
// A request is owned by its submitter, who fills it in, keeps it (and its
// buffer) alive until its completion runs, and may reuse it afterwards. It
// carries an intrusive hook so that whoever holds the request at the moment
// (the device, while it is in flight) can park it on a list without allocating.
//
//   struct MyIo {
//     blkclone::Request request;
//     std::array<std::byte, 4096> buffer;
//   };
//   io->request = blkclone::Request::Read(0, io->buffer);
//   io->request.on_complete = [](blkclone::Request& r, absl::Status s) { ... };
//   device.Submit(io->request);
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "boost/intrusive/list_hook.hpp"

namespace blkclone {

enum class Op : uint8_t {
  kRead,
  kWrite,
  kFlush,        // makes every write completed before submission durable
  kDiscard,      // the range's content no longer matters (reads: zeroes or old data)
  kWriteZeroes,  // the range reads back as zeroes
  kBlockStatus,  // describes how the range is stored (caps.block_status)
};

// One piece of a kBlockStatus answer. A hole reads as zeroes and holds no
// data; everything else is data, which may read as anything (zeroes too).
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool hole = false;

  uint64_t end() const { return offset + length; }
  friend bool operator==(const Extent&, const Extent&) = default;
};

absl::string_view OpName(Op op);

// Request flags, combinable with |.
enum RequestFlags : uint8_t {
  kNoFlags = 0,
  // Write-like ops: the data is durable when the request completes.
  kFua = 1 << 0,
  // Write-like ops: every write completed before submission is made durable
  // before this request is performed (a flush in front of it).
  kPreflush = 1 << 1,
};

struct Request;

// Called exactly once per submission, from within Submit or from any thread of
// the device. After it returns the device no longer touches the request.
using CompletionFn = void (*)(Request& request, absl::Status status);

using RequestHook =
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>>;

struct Request {
  Op op = Op::kRead;
  uint8_t flags = kNoFlags;
  uint64_t offset = 0;
  uint64_t length = 0;
  // kRead: filled by the device; kWrite: only read by the device; others: unused.
  std::byte* data = nullptr;
  // kBlockStatus: replaced by the device with extents that cover the range
  // exactly, in order, each a whole number of logical blocks (a block holding
  // any data is data); others: unused.
  std::vector<Extent>* extents = nullptr;
  CompletionFn on_complete = nullptr;
  // Free for the submitter (e.g. the object that embeds this request).
  void* context = nullptr;
  // Free for whoever holds the request: the device while it is in flight.
  RequestHook hook;

  static Request Read(uint64_t offset, std::span<std::byte> buffer) {
    return Make(Op::kRead, kNoFlags, offset, buffer.size(), buffer.data());
  }
  static Request Write(uint64_t offset, std::span<const std::byte> buffer,
                       uint8_t flags = kNoFlags) {
    return Make(Op::kWrite, flags, offset, buffer.size(), const_cast<std::byte*>(buffer.data()));
  }
  static Request Flush() { return Make(Op::kFlush, kNoFlags, 0, 0, nullptr); }
  static Request Discard(uint64_t offset, uint64_t length, uint8_t flags = kNoFlags) {
    return Make(Op::kDiscard, flags, offset, length, nullptr);
  }
  static Request WriteZeroes(uint64_t offset, uint64_t length, uint8_t flags = kNoFlags) {
    return Make(Op::kWriteZeroes, flags, offset, length, nullptr);
  }
  static Request BlockStatus(uint64_t offset, uint64_t length, std::vector<Extent>* extents) {
    Request request = Make(Op::kBlockStatus, kNoFlags, offset, length, nullptr);
    request.extents = extents;
    return request;
  }
  static Request Make(Op op, uint8_t flags, uint64_t offset, uint64_t length, std::byte* data) {
    Request request;
    request.op = op;
    request.flags = flags;
    request.offset = offset;
    request.length = length;
    request.data = data;
    return request;
  }

  // Runs the completion; for devices.
  void Complete(absl::Status status) { on_complete(*this, std::move(status)); }
};

// True for ops that change the content of the device.
constexpr bool ModifiesData(Op op) {
  return op == Op::kWrite || op == Op::kDiscard || op == Op::kWriteZeroes;
}

}  // namespace blkclone

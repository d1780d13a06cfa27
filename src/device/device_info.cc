// Request validation shared by every device.
#include "blkclone/device_info.hpp"


#include "absl/strings/str_cat.h"

namespace blkclone {

absl::string_view OpName(Op op) {
  switch (op) {
    case Op::kRead:
      return "read";
    case Op::kWrite:
      return "write";
    case Op::kFlush:
      return "flush";
    case Op::kDiscard:
      return "discard";
    case Op::kWriteZeroes:
      return "write-zeroes";
    case Op::kBlockStatus:
      return "block-status";
  }
  return "unknown-op";
}

namespace {

std::string Describe(const Request& request) {
  return absl::StrCat(OpName(request.op), " at offset ", request.offset, " length ",
                      request.length);
}

}  // namespace

absl::Status ValidateRequest(const DeviceInfo& info, const Request& request) {
  const Capabilities& caps = info.caps;
  if (request.op == Op::kFlush) {
    if (request.offset != 0 || request.length != 0 || request.flags != kNoFlags)
      return absl::InvalidArgumentError("flush takes no offset, length or flags");
    return absl::OkStatus();
  }
  if (request.op == Op::kDiscard && !caps.discard)
    return absl::UnimplementedError(absl::StrCat(Describe(request), ": device cannot discard"));
  if (request.op == Op::kWriteZeroes && !caps.write_zeroes)
    return absl::UnimplementedError(
        absl::StrCat(Describe(request), ": device cannot write zeroes"));
  if (request.op == Op::kBlockStatus && !caps.block_status)
    return absl::UnimplementedError(
        absl::StrCat(Describe(request), ": device cannot describe its allocation"));
  if (request.op == Op::kBlockStatus && request.extents == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(Describe(request), ": no extent list"));
  if (ModifiesData(request.op) && caps.read_only)
    return absl::FailedPreconditionError(absl::StrCat(Describe(request), ": device is read-only"));
  if ((request.flags & ~(kFua | kPreflush)) != 0 ||
      ((request.op == Op::kRead || request.op == Op::kBlockStatus) &&
       request.flags != kNoFlags))
    return absl::InvalidArgumentError(absl::StrCat(Describe(request), ": invalid flags ",
                                                   static_cast<int>(request.flags)));
  const uint64_t block = info.logical_block_size;
  if (request.offset % block != 0 || request.length % block != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(request), ": not aligned to the logical block size ", block));
  const bool has_buffer = request.op == Op::kRead || request.op == Op::kWrite;
  if (has_buffer && request.length > 0) {
    if (request.data == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(Describe(request), ": no buffer"));
    if (reinterpret_cast<uintptr_t>(request.data) % info.memory_alignment != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          Describe(request), ": buffer not aligned to ", info.memory_alignment, " bytes"));
  }
  if (request.offset > info.size || request.length > info.size - request.offset)
    return absl::OutOfRangeError(
        absl::StrCat(Describe(request), ": beyond the end of the device (", info.size, " bytes)"));
  if (has_buffer && info.max_transfer != 0 && request.length > info.max_transfer)
    return absl::InvalidArgumentError(absl::StrCat(
        Describe(request), ": larger than the device's maximum transfer ", info.max_transfer));
  return absl::OkStatus();
}

}  // namespace blkclone

// Request checking, error mapping and reply encoding for the transmission phase.
#include "blkclone/internal/nbd_transmission.hpp"

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/device_info.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// Stand in for the data buffer and the extent list while ValidateRequest
// checks a request: they are allocated only for requests that pass.
std::byte buffer_probe;
std::vector<Extent> extents_probe;

NbdCommand Reject(NbdCommand command, uint32_t error, std::string message) {
  command.kind = NbdCommand::Kind::kReject;
  command.error = error;
  command.message = std::move(message);
  return command;
}

}  // namespace

NbdRequestHeader DecodeRequestHeader(std::span<const std::byte, nbd::kRequestHeaderSize> raw) {
  nbd::WireReader reader(raw);
  NbdRequestHeader header;
  header.magic = reader.U32();
  header.flags = reader.U16();
  header.type = reader.U16();
  header.cookie = reader.U64();
  header.offset = reader.U64();
  header.length = reader.U32();
  return header;
}

NbdCommand InterpretRequest(const NbdRequestHeader& header, const NbdExport& spec,
                            const NbdNegotiated& negotiated) {
  NbdCommand command;
  command.payload = header.type == nbd::kCmdWrite ? header.length : 0;
  if (header.magic != nbd::kRequestMagic) {
    command.kind = NbdCommand::Kind::kBadMagic;
    return command;
  }
  Op op;
  uint16_t allowed_flags = nbd::kCmdFlagFua;  // valid on every command
  switch (header.type) {
    case nbd::kCmdDisc:
      command.kind = NbdCommand::Kind::kDisconnect;
      return command;
    case nbd::kCmdRead:
      op = Op::kRead;
      break;
    case nbd::kCmdWrite:
      op = Op::kWrite;
      break;
    case nbd::kCmdFlush:
      op = Op::kFlush;
      break;
    case nbd::kCmdTrim:
      op = Op::kDiscard;
      break;
    case nbd::kCmdWriteZeroes:
      op = Op::kWriteZeroes;
      // Write-zeroes never punches holes in blkclone's devices: it already
      // provisions what NO_HOLE asks for.
      allowed_flags |= nbd::kCmdFlagNoHole;
      break;
    case nbd::kCmdBlockStatus:
      if (negotiated.contexts.empty())
        return Reject(std::move(command), nbd::kEinval,
                      "block status without a negotiated metadata context");
      op = Op::kBlockStatus;
      allowed_flags |= nbd::kCmdFlagReqOne;
      break;
    case nbd::kCmdCache:
      op = Op::kBlockStatus;  // the same checks: range and alignment, no data
      break;
    default:
      return Reject(std::move(command), nbd::kEinval,
                    absl::StrCat("unknown command ", header.type));
  }
  const auto describe = [&] {
    return absl::StrCat(header.type == nbd::kCmdCache ? "cache" : OpName(op), " at offset ",
                        header.offset, " length ", header.length);
  };
  if (ModifiesData(op) && spec.rules.caps.read_only)
    return Reject(std::move(command), nbd::kEperm,
                  absl::StrCat(describe(), ": export is read-only"));
  if ((header.flags & ~allowed_flags) != 0)
    return Reject(std::move(command), nbd::kEinval,
                  absl::StrCat(describe(), ": unsupported flags ", header.flags));
  const bool has_data = op == Op::kRead || op == Op::kWrite;
  if (has_data && header.length > spec.max_payload)
    return Reject(std::move(command), nbd::kEinval,
                  absl::StrCat(describe(), ": more than the maximum payload ", spec.max_payload));
  if (op != Op::kFlush && header.length == 0)
    return Reject(std::move(command), nbd::kEinval, absl::StrCat(describe(), ": empty request"));
  // FUA matters only where data changes; clients set it elsewhere too.
  const uint8_t flags =
      (header.flags & nbd::kCmdFlagFua) != 0 && ModifiesData(op) ? kFua : kNoFlags;
  command.request =
      Request::Make(op, flags, header.offset, header.length, has_data ? &buffer_probe : nullptr);
  if (op == Op::kBlockStatus) command.request.extents = &extents_probe;
  if (absl::Status status = ValidateRequest(spec.rules, command.request); !status.ok())
    return Reject(std::move(command), NbdErrorFor(op, status), std::string(status.message()));
  command.request.data = nullptr;
  command.request.extents = nullptr;
  command.req_one = (header.flags & nbd::kCmdFlagReqOne) != 0;
  command.kind = header.type == nbd::kCmdBlockStatus ? NbdCommand::Kind::kBlockStatus
                 : header.type == nbd::kCmdCache     ? NbdCommand::Kind::kCache
                                                     : NbdCommand::Kind::kSubmit;
  return command;
}

uint32_t NbdErrorFor(Op op, const absl::Status& status) {
  if (status.ok()) return 0;
  if (status.code() == absl::StatusCode::kOutOfRange)
    return ModifiesData(op) ? nbd::kEnospc : nbd::kEinval;
  switch (StatusToErrno(status)) {
    case EPERM:
      return nbd::kEperm;
    case ENOSPC:
      return nbd::kEnospc;
    case EINVAL:
    case EOPNOTSUPP:  // a command the export did not advertise
      return nbd::kEinval;
    default:
      return nbd::kEio;
  }
}

void EncodeReply(const NbdReply& reply, bool structured, nbd::WireWriter& out) {
  const bool read = reply.command == nbd::kCmdRead;
  if (!structured || (reply.error == 0 && !read)) {
    out.U32(nbd::kSimpleReplyMagic).U32(reply.error).U64(reply.cookie);
    return;
  }
  out.U32(nbd::kStructuredReplyMagic).U16(nbd::kReplyFlagDone);
  if (reply.error == 0) {
    out.U16(nbd::kReplyTypeOffsetData).U64(reply.cookie).U32(8 + reply.data_length);
    out.U64(reply.offset);
    return;
  }
  const absl::string_view message = reply.message.substr(0, nbd::kMaxString);
  const uint32_t offset_size = reply.error_at_offset ? 8 : 0;
  out.U16(reply.error_at_offset ? nbd::kReplyTypeErrorOffset : nbd::kReplyTypeError)
      .U64(reply.cookie)
      .U32(static_cast<uint32_t>(4 + 2 + message.size() + offset_size))
      .U32(reply.error)
      .U16(static_cast<uint16_t>(message.size()))
      .String(message);
  if (reply.error_at_offset) out.U64(reply.offset);
}

}  // namespace blkclone::internal

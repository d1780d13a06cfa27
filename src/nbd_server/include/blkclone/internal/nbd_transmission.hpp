// The NBD transmission phase as pure functions: decoding and checking request
// headers, mapping device errors to NBD errors, and encoding replies. No I/O,
// so the fuzzer and unit tests drive them directly.
//
//   NbdCommand command = InterpretRequest(DecodeRequestHeader(raw), spec, negotiated);
//   switch (command.kind) { ... }  // submit command.request, or reply command.error
//   WireWriter header;
//   EncodeReply({.cookie = cookie, .command = nbd::kCmdRead, .data_length = n}, true, header);
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "blkclone/internal/nbd_export.hpp"
#include "blkclone/internal/nbd_handshake.hpp"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/request.hpp"

namespace blkclone::internal {

struct NbdRequestHeader {
  uint32_t magic = 0;
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;  // the client's handle, echoed in the reply
  uint64_t offset = 0;
  uint32_t length = 0;
};

NbdRequestHeader DecodeRequestHeader(std::span<const std::byte, nbd::kRequestHeaderSize> raw);

// What to do with one request.
struct NbdCommand {
  enum class Kind : uint8_t {
    kSubmit,       // `request` is valid for the device (op, flags, offset, length)
    kBlockStatus,  // answer for `request`'s range (a valid kBlockStatus but for
                   // its extent list) in the negotiated metadata contexts
    kCache,        // NBD_CMD_CACHE of `request`'s range (checked as kBlockStatus)
    kReject,       // reply `error` without touching the device
    kDisconnect,   // NBD_CMD_DISC: finish what is in flight, then close
    kBadMagic,     // the stream is out of step: close at once
  };
  Kind kind = Kind::kReject;
  Request request;       // kSubmit; the caller supplies the buffer
  bool req_one = false;  // kBlockStatus: NBD_CMD_FLAG_REQ_ONE, one descriptor per context
  uint32_t error = 0;
  std::string message;
  // Bytes that follow the header on the wire (a WRITE's data), whatever the
  // kind: a refused write's data must still be read past.
  uint32_t payload = 0;
};

// Checks every field against the protocol, the export and what the handshake
// negotiated: magic, command, flags, payload size, then the device's own rules
// (ValidateRequest), so that only requests the device accepts reach it.
NbdCommand InterpretRequest(const NbdRequestHeader& header, const NbdExport& spec,
                            const NbdNegotiated& negotiated);

// The NBD error for a request `op` that failed with `status` (0 for OK):
// out of range is EINVAL for reads and ENOSPC for writes, as the protocol asks;
// read-only is EPERM; other rejections EINVAL; anything else EIO.
uint32_t NbdErrorFor(Op op, const absl::Status& status);

struct NbdReply {
  uint64_t cookie = 0;
  uint16_t command = 0;  // the request's type
  uint64_t offset = 0;   // the request's offset
  uint32_t error = 0;
  absl::string_view message;  // for structured error chunks
  // An error the device reported for the range from `offset` (not a rejection).
  bool error_at_offset = false;
  uint32_t data_length = 0;  // a successful READ: the data that follows
};

// Appends what precedes the reply's data: a simple reply, or with structured
// replies one final chunk (OFFSET_DATA for a successful READ, ERROR or
// ERROR_OFFSET for a failure, a simple reply for any other success).
void EncodeReply(const NbdReply& reply, bool structured, nbd::WireWriter& out);

}  // namespace blkclone::internal

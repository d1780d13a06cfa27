// NBD protocol values and big-endian wire encoding, named as in the protocol
// specification (doc/proto.md of the NetworkBlockDevice/nbd project). Values
// only: nbd_handshake.hpp and nbd_transmission.hpp give them behaviour.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace blkclone::internal::nbd {

inline constexpr uint64_t kMagic = 0x4e42444d41474943;        // "NBDMAGIC"
inline constexpr uint64_t kOptionMagic = 0x49484156454f5054;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x0003e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;

// Handshake flags (server) and client flags.
inline constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr uint16_t kFlagNoZeroes = 1 << 1;
inline constexpr uint32_t kClientFlagFixedNewstyle = 1 << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1 << 1;

// Transmission flags.
inline constexpr uint16_t kFlagHasFlags = 1 << 0;
inline constexpr uint16_t kFlagReadOnly = 1 << 1;
inline constexpr uint16_t kFlagSendFlush = 1 << 2;
inline constexpr uint16_t kFlagSendFua = 1 << 3;
inline constexpr uint16_t kFlagSendTrim = 1 << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1 << 6;
inline constexpr uint16_t kFlagCanMultiConn = 1 << 8;
inline constexpr uint16_t kFlagSendCache = 1 << 10;

// Options.
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;

// Option replies; errors have bit 31 set.
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepErrUnsup = 0x80000001;
inline constexpr uint32_t kRepErrInvalid = 0x80000003;
inline constexpr uint32_t kRepErrUnknown = 0x80000006;
inline constexpr uint32_t kRepErrTooBig = 0x80000009;

// NBD_REP_INFO types.
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// Commands and command flags.
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;
inline constexpr uint16_t kCmdFlagFua = 1 << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr uint16_t kCmdFlagReqOne = 1 << 3;

// Structured reply chunks.
inline constexpr uint16_t kReplyFlagDone = 1 << 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeError = (1 << 15) + 1;
inline constexpr uint16_t kReplyTypeErrorOffset = (1 << 15) + 2;

// Block status flags of base:allocation; blkclone:hydrated is documented in
// docs/design.md ("Metadata contexts").
inline constexpr uint32_t kStateHole = 1 << 0;
inline constexpr uint32_t kStateZero = 1 << 1;
inline constexpr uint32_t kStateHydrated = 1 << 0;

// Error values: fixed by the protocol, whatever the host's errno numbering.
inline constexpr uint32_t kEperm = 1;
inline constexpr uint32_t kEio = 5;
inline constexpr uint32_t kEinval = 22;
inline constexpr uint32_t kEnospc = 28;

// Message sizes.
inline constexpr size_t kOptionHeaderSize = 16;     // magic, option, length
inline constexpr size_t kRequestHeaderSize = 28;    // magic, flags, type, cookie, offset, length
inline constexpr size_t kChunkHeaderSize = 20;      // magic, flags, type, cookie, length
inline constexpr size_t kStatusDescriptorSize = 8;  // length, flags
inline constexpr size_t kExportNameReplyZeroes = 124;

// Limits: the protocol's for strings, the portable maximum for a payload (which
// clients honour without being told), and ours for an option's data.
inline constexpr size_t kMaxString = 4096;
inline constexpr uint32_t kMaxPayload = 32 << 20;
inline constexpr uint32_t kMaxOptionData = 64 << 10;
inline constexpr uint32_t kMaxMinimumBlockSize = 64 << 10;

// Appends big-endian fields to a growing message.
class WireWriter {
 public:
  WireWriter& U16(uint16_t value) { return Put(value, 2); }
  WireWriter& U32(uint32_t value) { return Put(value, 4); }
  WireWriter& U64(uint64_t value) { return Put(value, 8); }
  WireWriter& Bytes(std::span<const std::byte> bytes) {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  WireWriter& String(absl::string_view text) {
    return Bytes(std::as_bytes(std::span(text.data(), text.size())));
  }
  WireWriter& Zeroes(size_t count) {
    bytes_.resize(bytes_.size() + count, std::byte{0});
    return *this;
  }
  std::span<const std::byte> data() const { return bytes_; }

 private:
  WireWriter& Put(uint64_t value, int size) {
    for (int shift = 8 * (size - 1); shift >= 0; shift -= 8)
      bytes_.push_back(static_cast<std::byte>(value >> shift));
    return *this;
  }
  std::vector<std::byte> bytes_;
};

// Takes big-endian fields off a received message. Reading past the end yields
// zeroes and clears ok(), so a parser checks once after reading every field.
class WireReader {
 public:
  explicit WireReader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  uint16_t U16() { return static_cast<uint16_t>(Take(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Take(4)); }
  uint64_t U64() { return Take(8); }
  std::string String(size_t length) {
    if (length > remaining()) {
      ok_ = false;
      at_ = bytes_.size();
      return {};
    }
    std::string text(reinterpret_cast<const char*>(bytes_.data() + at_), length);
    at_ += length;
    return text;
  }
  size_t remaining() const { return bytes_.size() - at_; }
  bool ok() const { return ok_; }

 private:
  uint64_t Take(size_t size) {
    if (size > remaining()) {
      ok_ = false;
      at_ = bytes_.size();
      return 0;
    }
    uint64_t value = 0;
    for (size_t i = 0; i < size; ++i) value = value << 8 | static_cast<uint8_t>(bytes_[at_ + i]);
    at_ += size;
    return value;
  }

  std::span<const std::byte> bytes_;
  size_t at_ = 0;
  bool ok_ = true;
};

}  // namespace blkclone::internal::nbd

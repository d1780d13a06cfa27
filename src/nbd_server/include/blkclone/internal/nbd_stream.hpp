// NbdStream: the byte stream an NBD session runs over. The server uses a socket;
// the fuzzer and tests feed bytes from memory, so that the handshake and the
// request handling run without a network.
//
//   std::array<std::byte, nbd::kRequestHeaderSize> header;
//   BLKCLONE_RETURN_IF_ERROR(stream.Read(header));
//   std::span<const std::byte> pieces[] = {reply_header, data};
//   BLKCLONE_RETURN_IF_ERROR(stream.Write(pieces));
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"

namespace blkclone::internal {

// Threads: one thread reads and one thread writes at a time; StopReading and
// Disconnect may be called from any thread, at any time.
class NbdStream {
 public:
  virtual ~NbdStream() = default;

  // Fills `buffer` completely, or fails: end of stream, broken connection, or
  // reading stopped.
  [[nodiscard]] virtual absl::Status Read(std::span<std::byte> buffer) = 0;
  // Sends `pieces` in order, completely, or fails.
  [[nodiscard]] virtual absl::Status Write(std::span<const std::span<const std::byte>> pieces) = 0;
  // Makes reads fail from now on, also one that is blocked; writes still work.
  virtual void StopReading() = 0;
  // Breaks the connection both ways; blocked reads and writes fail.
  virtual void Disconnect() = 0;
};

// Reads and drops `length` bytes: data that follows a message the server refuses.
[[nodiscard]] inline absl::Status SkipBytes(NbdStream& stream, uint64_t length) {
  std::array<std::byte, 16 << 10> scratch;
  while (length > 0) {
    const size_t chunk = std::min<uint64_t>(length, scratch.size());
    if (absl::Status status = stream.Read(std::span(scratch).first(chunk)); !status.ok())
      return status;
    length -= chunk;
  }
  return absl::OkStatus();
}

}  // namespace blkclone::internal

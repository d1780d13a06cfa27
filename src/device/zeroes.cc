// Thin zeroing and zero detection.
#include "blkclone/zeroes.hpp"

#include <cstdint>
#include <cstring>

namespace blkclone {

std::optional<Op> ThinZeroingOp(const Capabilities& caps) {
  if (caps.read_only) return std::nullopt;
  if (caps.discard && caps.discard_zeroes_data) return Op::kDiscard;
  if (caps.write_zeroes) return Op::kWriteZeroes;
  return std::nullopt;
}

bool IsAllZeroes(std::span<const std::byte> bytes) {
  // Eight bytes at a time, then the tail byte by byte.
  size_t at = 0;
  for (; at + sizeof(uint64_t) <= bytes.size(); at += sizeof(uint64_t)) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + at, sizeof(word));
    if (word != 0) return false;
  }
  for (; at < bytes.size(); ++at) {
    if (bytes[at] != std::byte{0}) return false;
  }
  return true;
}

}  // namespace blkclone

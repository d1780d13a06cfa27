// Byte strings for tests: content from a seed, and slices of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace blkclone::testing {

// `n` bytes that depend only on `seed`.
inline std::vector<std::byte> RandomBytes(size_t n, uint32_t seed) {
  std::vector<std::byte> bytes(n);
  std::mt19937 rng(seed);
  for (std::byte& b : bytes) b = std::byte(rng());
  return bytes;
}

// bytes[offset, offset + length).
inline std::vector<std::byte> Slice(const std::vector<std::byte>& bytes, uint64_t offset,
                                    uint64_t length) {
  return {bytes.begin() + offset, bytes.begin() + offset + length};
}

}  // namespace blkclone::testing

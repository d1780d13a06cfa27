// Byte strings for tests: content from a seed, and slices of it.
#pragma once

#include <algorithm>
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

// RandomBytes with holes, as disk images have them: of every four regions
// of `region_size`, the second is all zeroes and the third zero in its second
// half (FillData leaves those zeroes as holes).
inline std::vector<std::byte> SparseBytes(size_t n, uint64_t region_size, uint32_t seed) {
  std::vector<std::byte> bytes = RandomBytes(n, seed);
  for (uint64_t region = 0; region * region_size < n; ++region) {
    const uint64_t begin = region * region_size;
    const uint64_t end = std::min<uint64_t>(begin + region_size, n);
    if (region % 4 == 1) std::fill(bytes.begin() + begin, bytes.begin() + end, std::byte{0});
    if (region % 4 == 2)
      std::fill(bytes.begin() + (begin + end) / 2, bytes.begin() + end, std::byte{0});
  }
  return bytes;
}

// bytes[offset, offset + length).
inline std::vector<std::byte> Slice(const std::vector<std::byte>& bytes, uint64_t offset,
                                    uint64_t length) {
  return {bytes.begin() + offset, bytes.begin() + offset + length};
}

}  // namespace blkclone::testing

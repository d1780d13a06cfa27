// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
// metadata block. x86-64 CPUs with SSE4.2 compute it in hardware, several times
// faster than tables, which matters when opening reads a gigabyte of bitmap;
// everything else uses slicing-by-8 tables built at compile time.
#include <array>
#include <cstring>

#include "blkclone/internal/metadata_format.hpp"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace blkclone::internal {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;

using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (kPolynomial & (0u - (crc & 1)));
    t[0][i] = crc;
  }
  for (size_t k = 1; k < t.size(); ++k) {
    for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

uint32_t Load32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Takes and returns the register value (before the final inversion).
uint32_t Portable(uint32_t crc, const unsigned char* p, size_t n) {
  for (; n >= 8; n -= 8, p += 8) {
    const uint32_t low = crc ^ Load32(p);
    const uint32_t high = Load32(p + 4);
    crc = kTables[7][low & 0xff] ^ kTables[6][(low >> 8) & 0xff] ^ kTables[5][(low >> 16) & 0xff] ^
          kTables[4][low >> 24] ^ kTables[3][high & 0xff] ^ kTables[2][(high >> 8) & 0xff] ^
          kTables[1][(high >> 16) & 0xff] ^ kTables[0][high >> 24];
  }
  for (; n > 0; --n, ++p) crc = kTables[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Hardware(uint32_t crc, const unsigned char* p,
                                                    size_t n) {
  uint64_t wide = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    wide = _mm_crc32_u64(wide, word);
  }
  crc = static_cast<uint32_t>(wide);
  for (; n > 0; --n, ++p) crc = _mm_crc32_u8(crc, *p);
  return crc;
}

bool HasHardwareCrc() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

const unsigned char* Bytes(std::span<const std::byte> data) {
  return reinterpret_cast<const unsigned char*>(data.data());
}

}  // namespace

uint32_t Crc32c(std::span<const std::byte> data) {
#if defined(__x86_64__)
  if (HasHardwareCrc()) return ~Hardware(~0u, Bytes(data), data.size());
#endif
  return Crc32cPortable(data);
}

uint32_t Crc32cPortable(std::span<const std::byte> data) {
  return ~Portable(~0u, Bytes(data), data.size());
}

}  // namespace blkclone::internal

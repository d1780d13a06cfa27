// How the O_DIRECT backends (DirectDevice, UringDevice with `direct`) treat
// alignment. O_DIRECT needs file offsets, lengths and buffer addresses aligned
// to what the file system or device demands; blkclone reports that demand and
// lets the caller choose between bouncing and rejecting.
//
//   // Any 512-byte-granular request, bounced where the kernel needs more:
//   auto relaxed = blkclone::DirectDevice::Open(path, {});
//   // Only requests O_DIRECT takes as they are; info() says which:
//   auto strict = blkclone::DirectDevice::Open(path, {.direct_io = {.strict_alignment = true}});
#pragma once

#include <cstdint>

namespace blkclone {

// What O_DIRECT requires of one open file, in bytes (powers of two).
struct DirectIoAlignment {
  uint32_t offset = 1;  // file offsets and lengths are multiples of it
  uint32_t memory = 1;  // buffer addresses are multiples of it
};

struct DirectIoOptions {
  // false: info() keeps the logical block size and reports memory alignment 1;
  // requests that break the direct-I/O alignment go through bounce buffers.
  // true: info() reports the direct-I/O alignment itself, so ValidateRequest
  // rejects such requests (kInvalidArgument) and nothing is ever bounced.
  bool strict_alignment = false;
  // Raises the direct-I/O alignment to at least this power of two (e.g. 4096 to
  // keep transfers in whole pages); 0 uses what the kernel reports.
  uint32_t min_alignment = 0;
};

}  // namespace blkclone

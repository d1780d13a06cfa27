// What a BlockDevice tells its users about itself: size, alignment rules and
// capabilities, as plain data that callers check instead of guessing.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "blkclone/request.hpp"

namespace blkclone {

enum class FuaSupport : uint8_t {
  kNative,    // the device persists a FUA write by itself
  kEmulated,  // the device implements FUA as write + flush
};

struct Capabilities {
  bool discard = false;              // kDiscard accepted (else kUnimplemented)
  bool discard_zeroes_data = false;  // discarded ranges read back as zeroes
  bool write_zeroes = false;         // kWriteZeroes accepted (else kUnimplemented)
  bool read_only = false;            // data-modifying ops fail with kFailedPrecondition
  // kBlockStatus accepted (else kUnimplemented): the device tells holes from
  // data; without it everything counts as data (see DescribeAllocation).
  bool block_status = false;
  // Completed writes may be lost on power failure until a flush completes.
  bool volatile_write_cache = true;
  FuaSupport fua = FuaSupport::kEmulated;
};

struct DeviceInfo {
  uint64_t size = 0;                  // bytes, a multiple of logical_block_size
  uint32_t logical_block_size = 512;  // offsets and lengths are multiples of it
  uint32_t memory_alignment = 1;      // buffer addresses are multiples of it
  uint64_t max_transfer = 0;          // most bytes in one request; 0: no limit
  Capabilities caps;
};

// Checks `request` against the rules every device enforces, in this order:
// flush shape, capability (kUnimplemented / kFailedPrecondition), flags,
// alignment (kInvalidArgument), range (kOutOfRange), transfer size.
// Devices call it first and complete with its error untouched.
[[nodiscard]] absl::Status ValidateRequest(const DeviceInfo& info, const Request& request);

}  // namespace blkclone

// Making ranges read as zeroes without writing data: which request a device
// takes for it, and telling all-zero buffers apart.
#pragma once

#include <cstddef>
#include <optional>
#include <span>

#include "blkclone/device_info.hpp"

namespace blkclone {

// The request that makes a range of a device with `caps` read as zeroes while
// keeping it thin: a discard where discarded ranges read as zeroes (a punched
// hole), else write-zeroes (which may unmap); nothing if neither is offered.
std::optional<Op> ThinZeroingOp(const Capabilities& caps);

// True if every byte of `bytes` is zero.
bool IsAllZeroes(std::span<const std::byte> bytes);

}  // namespace blkclone

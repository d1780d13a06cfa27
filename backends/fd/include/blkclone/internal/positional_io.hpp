// The innermost transfer loop of the file-descriptor backends.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace blkclone::internal {

// Reads or writes all `length` bytes at `offset` with pread / pwritev2, looping
// over short transfers, EINTR and EAGAIN. `rw_flags` (RWF_DSYNC) apply to
// writes. kOutOfRange if the file ends first (its size changed under us).
[[nodiscard]] absl::Status PositionalIo(int fd, absl::string_view path, bool is_read,
                                        std::byte* data, uint64_t length, uint64_t offset,
                                        int rw_flags = 0);

}  // namespace blkclone::internal

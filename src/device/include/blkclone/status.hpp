// Error handling conventions shared by every blkclone component.
//
// Errors are absl::Status values; nothing throws across the library boundary.
// System call failures become a Status that names the operation, offset and
// length, so a message read in a log says what failed and where:
//
//   ssize_t n = ::pread(fd, buf, len, off);
//   if (n < 0) return blkclone::ErrnoStatus(errno, "pread", off, len);
//
//   BLKCLONE_RETURN_IF_ERROR(device.Flush());
//   BLKCLONE_ASSIGN_OR_RETURN(auto file, FileDevice::Open(path, {}));
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace blkclone {

// Maps an errno value to a Status whose message names `operation` and the byte
// range. EIO and ENOSPC get codes of their own (kInternal, kResourceExhausted),
// which Abseil would leave as kUnknown.
[[nodiscard]] absl::Status ErrnoStatus(int error_number, absl::string_view operation,
                                       uint64_t offset, uint64_t length);

// Same, for operations that have no byte range (open, ioctl, ...).
[[nodiscard]] absl::Status ErrnoStatus(int error_number, absl::string_view operation);

// The errno that best describes `status` (0 for OK); the inverse of ErrnoStatus,
// for exports whose protocols speak errno (NBD, FUSE).
[[nodiscard]] int StatusToErrno(const absl::Status& status);

}  // namespace blkclone

#define BLKCLONE_INTERNAL_CONCAT2(a, b) a##b
#define BLKCLONE_INTERNAL_CONCAT(a, b) BLKCLONE_INTERNAL_CONCAT2(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define BLKCLONE_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    if (absl::Status blkclone_status_ = (expr); !blkclone_status_.ok()) \
      return blkclone_status_;                           \
  } while (false)

// Evaluates `expr` (a StatusOr<T>); returns its status on error, else moves the
// value into `lhs`, which may be a declaration (`auto x`).
#define BLKCLONE_ASSIGN_OR_RETURN(lhs, expr) \
  BLKCLONE_INTERNAL_ASSIGN_OR_RETURN(BLKCLONE_INTERNAL_CONCAT(blkclone_or_, __LINE__), lhs, expr)

#define BLKCLONE_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                       \
  if (!tmp.ok()) return std::move(tmp).status();           \
  lhs = std::move(tmp).value()

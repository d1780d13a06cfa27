// errno <-> absl::Status mapping with operation context.
#include "blkclone/status.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace blkclone {
namespace {

absl::StatusCode CodeForErrno(int error_number) {
  switch (error_number) {
    case EIO:
      return absl::StatusCode::kInternal;
    case ENOSPC:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::ErrnoToStatusCode(error_number);
  }
}

std::string ErrnoName(int error_number) {
  return absl::StrCat(std::strerror(error_number), " (errno ", error_number, ")");
}

}  // namespace

absl::Status ErrnoStatus(int error_number, absl::string_view operation, uint64_t offset,
                         uint64_t length) {
  return absl::Status(CodeForErrno(error_number),
                      absl::StrCat(operation, " at offset ", offset, " length ", length, ": ",
                                   ErrnoName(error_number)));
}

absl::Status ErrnoStatus(int error_number, absl::string_view operation) {
  return absl::Status(CodeForErrno(error_number),
                      absl::StrCat(operation, ": ", ErrnoName(error_number)));
}

int StatusToErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return EINVAL;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kUnimplemented:
      return EOPNOTSUPP;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
      return EPERM;
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kAlreadyExists:
      return EEXIST;
    case absl::StatusCode::kCancelled:
      return ECANCELED;
    case absl::StatusCode::kDeadlineExceeded:
      return ETIMEDOUT;
    case absl::StatusCode::kUnavailable:
      return EAGAIN;
    default:
      return EIO;
  }
}

}  // namespace blkclone

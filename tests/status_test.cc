#include "blkclone/status.hpp"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using ::testing::HasSubstr;

TEST(ErrnoStatusTest, NamesOperationAndRange) {
  absl::Status s = ErrnoStatus(EIO, "pread", 4096, 512);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("pread at offset 4096 length 512"));
  EXPECT_THAT(s.message(), HasSubstr("errno 5"));
}

TEST(ErrnoStatusTest, MapsCommonErrnos) {
  EXPECT_EQ(ErrnoStatus(ENOSPC, "pwrite").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(ENOENT, "open x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EACCES, "open x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EINVAL, "ioctl").code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusToErrnoTest, RoundTripsTheErrnosDevicesReport) {
  for (int e : {EIO, ENOSPC, ENOENT, EINVAL, EOPNOTSUPP}) {
    EXPECT_EQ(StatusToErrno(ErrnoStatus(e, "op")), e) << "errno " << e;
  }
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::DataLossError("bad checksum")), EIO);
}

absl::Status Failing() { return absl::DataLossError("boom"); }
absl::StatusOr<int> Value(bool ok) {
  if (!ok) return absl::NotFoundError("none");
  return 42;
}

absl::Status UsesReturnIfError(int* reached) {
  BLKCLONE_RETURN_IF_ERROR(absl::OkStatus());
  *reached = 1;
  BLKCLONE_RETURN_IF_ERROR(Failing());
  *reached = 2;
  return absl::OkStatus();
}

absl::StatusOr<int> UsesAssignOrReturn(bool ok) {
  BLKCLONE_ASSIGN_OR_RETURN(int v, Value(ok));
  return v + 1;
}

TEST(MacrosTest, ReturnIfErrorStopsAtTheFirstError) {
  int reached = 0;
  EXPECT_EQ(UsesReturnIfError(&reached).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(reached, 1);
}

TEST(MacrosTest, AssignOrReturnPropagatesOrAssigns) {
  EXPECT_EQ(*UsesAssignOrReturn(true), 43);
  EXPECT_EQ(UsesAssignOrReturn(false).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace blkclone

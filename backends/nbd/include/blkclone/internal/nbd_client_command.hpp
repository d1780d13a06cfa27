// NbdClientCommand: what the NBD backend keeps for one request while it is in
// flight, and the plan that turns the request into NBD commands.
//
// A request becomes up to three stages, sent one after the other on one
// connection: a flush in front of it (kPreflush), the operation itself (a
// discard or write-zeroes longer than NBD's 32-bit length is sent in pieces;
// a block status is asked again from where the server's answer stopped), and
// a flush after it when FUA is asked of a server without native FUA. A
// connection loss sends the current stage again, elsewhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/device_info.hpp"
#include "blkclone/nbd_options.hpp"
#include "blkclone/request.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone::internal {

using NbdClock = std::chrono::steady_clock;

// What the server's flags and the device's mode let the plan use.
struct NbdFeatures {
  bool send_flush = false;    // writable, and the server has a volatile cache to flush
  bool send_fua = false;      // the server takes NBD_CMD_FLAG_FUA
  uint64_t block_size = 512;  // the device's logical block size: kBlockStatus answers are in it

  static NbdFeatures For(const NbdExportInfo& export_info, const DeviceInfo& info);
};

struct NbdClientCommand {
  enum class Stage : uint8_t { kPreflush, kMain, kFuaFlush, kDone };

  Request* request = nullptr;
  NbdClock::time_point deadline;
  uint32_t losses = 0;             // connection losses survived
  NbdClock::time_point last_loss;  // when the last one counted
  Stage stage = Stage::kMain;
  uint64_t done = 0;          // bytes of the operation already performed
  uint64_t flush_covers = 0;  // for a flush stage: the writes it covers (NbdDurability)

  // The NBD command on the wire, filled in by NbdClient.
  uint64_t sent_length = 0;
  bool answered = false;  // the server replied (or libnbd failed it)
  bool released = false;  // libnbd no longer refers to it
  int error = 0;          // the reply's errno, when answered
  absl::Status refused;   // libnbd would not send it
  // kBlockStatus: the server's base:allocation answer, clipped to what was
  // asked, merged, in bytes (a hole reads as zeroes: NBD_STATE_ZERO).
  std::vector<Extent> answer;

  boost::intrusive::list_member_hook<> hook;
};

using NbdCommandList = boost::intrusive::list<
    NbdClientCommand,
    boost::intrusive::member_hook<NbdClientCommand, boost::intrusive::list_member_hook<>,
                                  &NbdClientCommand::hook>>;

// One NBD command: a flush, or the op over [offset, offset + length).
struct NbdWireCommand {
  Op op = Op::kFlush;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::byte* data = nullptr;
  bool fua = false;
};

// Resets `command` for `request` and sets its first stage (kDone when there is
// nothing to send, e.g. a flush of a read-only device).
void BeginCommand(NbdClientCommand& command, Request& request, const NbdFeatures& features);
// Moves to the next stage after the current one succeeded.
void AdvanceCommand(NbdClientCommand& command, const NbdFeatures& features);
// The NBD command for the current stage (not kDone).
NbdWireCommand WireCommand(const NbdClientCommand& command, const NbdFeatures& features);

// "NBD read at offset X length Y", for error messages.
std::string DescribeCommand(const NbdClientCommand& command);
// The error the server replied with, as ErrnoStatus naming the request.
absl::Status ServerError(const NbdClientCommand& command, int error_number);
// kCancelled: the device was destroyed before the request could complete.
absl::Status ClosedError(const NbdClientCommand& command);

}  // namespace blkclone::internal

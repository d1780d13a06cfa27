// The plan of an NbdClientCommand: which NBD command each stage sends.
#include "blkclone/internal/nbd_client_command.hpp"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "blkclone/extents.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// NBD lengths are 32 bits. 2 GiB is below that and a multiple of every block
// size, so the pieces of a long discard stay aligned. Reads and writes never
// come near it: max_transfer is far smaller.
constexpr uint64_t kMaxWireLength = uint64_t{1} << 31;

// The stage after the operation itself.
NbdClientCommand::Stage AfterMain(const NbdClientCommand& command, const NbdFeatures& features) {
  const bool emulate_fua = (command.request->flags & kFua) != 0 && !features.send_fua;
  return emulate_fua && features.send_flush ? NbdClientCommand::Stage::kFuaFlush
                                            : NbdClientCommand::Stage::kDone;
}

// The stage for the operation, or what follows when it has no bytes.
NbdClientCommand::Stage MainOrAfter(const NbdClientCommand& command, const NbdFeatures& features) {
  return command.request->length > 0 ? NbdClientCommand::Stage::kMain
                                     : AfterMain(command, features);
}

// How much of the operation is done once its command on the wire succeeded:
// what was sent, or for a block status what the server's answer described,
// which may be less than was asked (the rest is asked again). The answer is
// in bytes and goes into the request's extents in whole blocks: a block
// holding any data is data, and so is one the answer stops inside.
uint64_t DoneAfterMain(NbdClientCommand& command, const NbdFeatures& features) {
  const Request& request = *command.request;
  if (request.op != Op::kBlockStatus) return command.done + command.sent_length;
  const uint64_t block = features.block_size;
  const uint64_t start = request.offset + command.done;
  const uint64_t answered = command.answer.back().end();
  const uint64_t end = (answered + block - 1) / block * block;
  AppendExtent(command.answer, answered, end - answered, /*hole=*/false);
  for (const Extent& extent : RoundExtents(command.answer, start, end - start, block))
    AppendExtent(*request.extents, extent.offset, extent.length, extent.hole);
  return end - request.offset;
}

}  // namespace

NbdFeatures NbdFeatures::For(const NbdExportInfo& export_info, const DeviceInfo& info) {
  const bool writable = !info.caps.read_only;
  return NbdFeatures{.send_flush = writable && export_info.can_flush,
                     .send_fua = writable && export_info.can_fua,
                     .block_size = info.logical_block_size};
}

void BeginCommand(NbdClientCommand& command, Request& request, const NbdFeatures& features) {
  command.request = &request;
  command.losses = 0;
  command.last_loss = NbdClock::time_point::min();
  command.done = 0;
  if (request.op == Op::kBlockStatus) request.extents->clear();
  if (request.op == Op::kFlush) {
    command.stage =
        features.send_flush ? NbdClientCommand::Stage::kMain : NbdClientCommand::Stage::kDone;
  } else if ((request.flags & kPreflush) != 0 && features.send_flush) {
    command.stage = NbdClientCommand::Stage::kPreflush;
  } else {
    command.stage = MainOrAfter(command, features);
  }
}

void AdvanceCommand(NbdClientCommand& command, const NbdFeatures& features) {
  switch (command.stage) {
    case NbdClientCommand::Stage::kPreflush:
      command.stage = MainOrAfter(command, features);
      return;
    case NbdClientCommand::Stage::kMain:
      command.done = DoneAfterMain(command, features);
      if (command.request->op == Op::kFlush) {
        command.stage = NbdClientCommand::Stage::kDone;
      } else if (command.done < command.request->length) {
        command.stage = NbdClientCommand::Stage::kMain;
      } else {
        command.stage = AfterMain(command, features);
      }
      return;
    case NbdClientCommand::Stage::kFuaFlush:
    case NbdClientCommand::Stage::kDone:
      command.stage = NbdClientCommand::Stage::kDone;
      return;
  }
}

NbdWireCommand WireCommand(const NbdClientCommand& command, const NbdFeatures& features) {
  const Request& request = *command.request;
  if (command.stage != NbdClientCommand::Stage::kMain || request.op == Op::kFlush) return {};
  return NbdWireCommand{
      .op = request.op,
      .offset = request.offset + command.done,
      .length = std::min(request.length - command.done, kMaxWireLength),
      .data = request.data == nullptr ? nullptr : request.data + command.done,
      .fua = request.op != Op::kRead && (request.flags & kFua) != 0 && features.send_fua};
}

std::string DescribeCommand(const NbdClientCommand& command) {
  const Request& request = *command.request;
  return absl::StrCat("NBD ", OpName(request.op), " at offset ", request.offset, " length ",
                      request.length);
}

absl::Status ServerError(const NbdClientCommand& command, int error_number) {
  const Request& request = *command.request;
  absl::string_view stage = command.stage == NbdClientCommand::Stage::kPreflush ? " (its preflush)"
                            : command.stage == NbdClientCommand::Stage::kFuaFlush
                                ? " (its FUA flush)"
                                : "";
  return ErrnoStatus(error_number, absl::StrCat("NBD ", OpName(request.op), stage), request.offset,
                     request.length);
}

absl::Status ClosedError(const NbdClientCommand& command) {
  return absl::CancelledError(
      absl::StrCat(DescribeCommand(command), ": the NBD device was closed first"));
}

}  // namespace blkclone::internal

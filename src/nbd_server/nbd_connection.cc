// One client's session: handshake, pipelined requests, replies in completion order.
#include "blkclone/internal/nbd_connection.hpp"

#include <array>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "blkclone/aligned_buffer.hpp"
#include "blkclone/internal/nbd_handshake.hpp"
#include "blkclone/internal/nbd_protocol.hpp"

namespace blkclone::internal {

// A request from its header to its reply.
struct NbdConnection::InFlight {
  NbdConnection* owner = nullptr;
  uint64_t cookie = 0;
  uint16_t command = 0;
  uint64_t offset = 0;
  uint64_t charge = 0;  // buffer bytes counted against max_in_flight_bytes
  AlignedBuffer buffer;
  Request request;
  uint32_t error = 0;
  std::string message;
  bool error_at_offset = false;
};

NbdConnection::NbdConnection(NbdStream& stream, AnyBlockDevice& device, const NbdExport& spec,
                             NbdLimits limits)
    : stream_(stream), device_(device), spec_(spec), limits_(limits) {}

void NbdConnection::Serve() {
  struct NewThread final : NbdSessionThreads {
    void RunBoth(absl::FunctionRef<void()> reader, absl::FunctionRef<void()> writer) override {
      std::thread thread([&] { writer(); });
      reader();
      thread.join();
    }
  } threads;
  Serve(threads);
}

void NbdConnection::Serve(NbdSessionThreads& threads) {
  absl::StatusOr<NbdNegotiated> negotiated = RunNbdHandshake(stream_, spec_);
  if (!negotiated.ok()) return;
  structured_ = negotiated->structured_replies;
  threads.RunBoth(
      [this] {
        ReadRequests();
        MutexLock lock(mu_);
        reading_done_ = true;
        ready_cv_.SignalAll();
      },
      [this] { WriteReplies(); });
}

void NbdConnection::Stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    room_cv_.SignalAll();
  }
  stream_.StopReading();
}

void NbdConnection::ReadRequests() {
  std::array<std::byte, nbd::kRequestHeaderSize> raw;
  for (;;) {
    {
      MutexLock lock(mu_);
      if (stopping_ || broken_) return;
    }
    if (!stream_.Read(raw).ok() || !Handle(DecodeRequestHeader(raw))) return;
  }
}

bool NbdConnection::Handle(const NbdRequestHeader& header) {
  NbdCommand command = InterpretRequest(header, spec_);
  if (command.kind == NbdCommand::Kind::kBadMagic || command.kind == NbdCommand::Kind::kDisconnect)
    return false;
  const bool submit = command.kind == NbdCommand::Kind::kSubmit;
  const Op op_kind = submit ? command.request.op : Op::kFlush;
  const bool has_buffer = op_kind == Op::kRead || op_kind == Op::kWrite;
  const uint64_t charge = has_buffer ? command.request.length : 0;
  if (!Reserve(charge)) return false;

  auto op = std::make_unique<InFlight>();
  op->owner = this;
  op->cookie = header.cookie;
  op->command = header.type;
  op->offset = header.offset;
  op->charge = charge;
  if (has_buffer) {
    op->buffer = AlignedBuffer(charge, spec_.buffer_alignment);
  }
  // A refused WRITE's data is still on the wire: read past it to stay in step.
  const absl::Status payload = op_kind == Op::kWrite
                                   ? stream_.Read(std::span(op->buffer.data(), charge))
                                   : SkipBytes(stream_, command.payload);
  if (!payload.ok()) {
    Release(*op);
    return false;
  }
  if (!submit) {
    op->error = command.error;
    op->message = std::move(command.message);
    Finish(op.release());
    return true;
  }
  op->request = command.request;
  op->request.data = op->buffer.data();
  op->request.context = op.get();
  op->request.on_complete = &OnDeviceDone;
  // May complete inline; the op then belongs to the writer.
  InFlight* const submitted = op.release();
  device_.Submit(submitted->request);
  return true;
}

bool NbdConnection::Reserve(uint64_t bytes) {
  MutexLock lock(mu_);
  room_cv_.Wait(mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_ || broken_) return true;
    // One request always fits, however large: the export's max_payload is
    // within max_in_flight_bytes anyway.
    return in_flight_ < limits_.max_in_flight_requests &&
           (in_flight_ == 0 || in_flight_bytes_ + bytes <= limits_.max_in_flight_bytes);
  });
  if (stopping_ || broken_) return false;
  ++in_flight_;
  in_flight_bytes_ += bytes;
  return true;
}

void NbdConnection::Release(const InFlight& op) {
  MutexLock lock(mu_);
  --in_flight_;
  in_flight_bytes_ -= op.charge;
  room_cv_.SignalAll();
  ready_cv_.SignalAll();
}

void NbdConnection::OnDeviceDone(Request& request, absl::Status status) {
  InFlight* op = static_cast<InFlight*>(request.context);
  if (!status.ok()) {
    op->error = NbdErrorFor(request.op, status);
    op->message = std::string(status.message());
    op->error_at_offset = true;
  }
  op->owner->Finish(op);
}

void NbdConnection::Finish(InFlight* op) {
  MutexLock lock(mu_);
  ready_.push_back(op);
  // Signalled under the lock: once it is released the connection may be gone.
  ready_cv_.SignalAll();
}

void NbdConnection::WriteReplies() {
  for (;;) {
    std::unique_ptr<InFlight> op;
    bool send;
    {
      MutexLock lock(mu_);
      ready_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !ready_.empty() || (reading_done_ && in_flight_ == 0);
      });
      if (ready_.empty()) return;
      op.reset(ready_.front());
      ready_.pop_front();
      send = !broken_;
    }
    // After a failed send, the remaining replies are only counted down: their
    // requests completed on the device, and nobody is left to tell.
    if (send && !SendReply(*op).ok()) {
      {
        MutexLock lock(mu_);
        broken_ = true;
        room_cv_.SignalAll();
      }
      stream_.Disconnect();
    }
    Release(*op);
  }
}

absl::Status NbdConnection::SendReply(const InFlight& op) {
  const bool with_data = op.command == nbd::kCmdRead && op.error == 0;
  const uint64_t data_length = with_data ? op.request.length : 0;
  nbd::WireWriter header;
  EncodeReply({.cookie = op.cookie,
               .command = op.command,
               .offset = op.offset,
               .error = op.error,
               .message = op.message,
               .error_at_offset = op.error_at_offset,
               .data_length = static_cast<uint32_t>(data_length)},
              structured_, header);
  const std::span<const std::byte> pieces[] = {header.data(), {op.buffer.data(), data_length}};
  return stream_.Write(pieces);
}

}  // namespace blkclone::internal

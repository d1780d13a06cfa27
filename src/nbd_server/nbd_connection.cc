// One client's session: handshake, pipelined requests, replies in completion order.
#include "blkclone/internal/nbd_connection.hpp"

#include <algorithm>
#include <array>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "blkclone/aligned_buffer.hpp"
#include "blkclone/internal/nbd_block_status.hpp"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/internal/worker_pool.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone::internal {
namespace {

// CACHE requests a connection hydrates at once; more wait for a worker.
constexpr int kCacheThreads = 4;

// The most a block status reply to `command` can hold: counted against
// max_in_flight_bytes like a read's buffer.
uint64_t StatusReplyBytes(const NbdCommand& command, const NbdExport& spec, size_t contexts) {
  const uint64_t descriptors =
      command.req_one ? 1
                      : std::min<uint64_t>(spec.max_status_descriptors,
                                           command.request.length / spec.min_block_size);
  return contexts * descriptors * nbd::kStatusDescriptorSize;
}

}  // namespace

// A request from its header to its reply.
struct NbdConnection::InFlight {
  NbdConnection* owner = nullptr;
  uint64_t cookie = 0;
  uint16_t command = 0;
  uint64_t offset = 0;
  uint64_t charge = 0;  // buffer bytes counted against max_in_flight_bytes
  AlignedBuffer buffer;
  Request request;
  // NBD_CMD_BLOCK_STATUS: the device's extents, and each negotiated context's
  // answer (in the order of NbdNegotiated::contexts).
  bool req_one = false;
  std::vector<Extent> extents;
  std::vector<std::vector<NbdStatusRun>> status;
  uint32_t error = 0;
  std::string message;
  bool error_at_offset = false;
  boost::intrusive::list_member_hook<> hook;  // a CACHE waiting for a worker
};

class NbdConnection::CacheWorkers : public WorkerPool<InFlight, &InFlight::hook> {
  using WorkerPool::WorkerPool;
};

NbdConnection::NbdConnection(NbdStream& stream, AnyBlockDevice& device, const NbdExport& spec,
                             NbdLimits limits)
    : stream_(stream), device_(device), spec_(spec), limits_(limits) {}

NbdConnection::~NbdConnection() = default;

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
  negotiated_ = *std::move(negotiated);
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
  NbdCommand command = InterpretRequest(header, spec_, negotiated_);
  if (command.kind == NbdCommand::Kind::kBadMagic || command.kind == NbdCommand::Kind::kDisconnect)
    return false;
  const bool submit = command.kind == NbdCommand::Kind::kSubmit;
  const Op op_kind = submit ? command.request.op : Op::kFlush;
  const bool has_buffer = op_kind == Op::kRead || op_kind == Op::kWrite;
  const uint64_t charge = has_buffer ? command.request.length
                          : command.kind == NbdCommand::Kind::kBlockStatus
                              ? StatusReplyBytes(command, spec_, negotiated_.contexts.size())
                              : 0;
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
  switch (command.kind) {
    case NbdCommand::Kind::kReject:
      op->error = command.error;
      op->message = std::move(command.message);
      Finish(op.release());
      return true;
    case NbdCommand::Kind::kBlockStatus:
      op->request = command.request;
      op->req_one = command.req_one;
      AnswerBlockStatus(std::move(op));
      return true;
    case NbdCommand::Kind::kCache:
      op->request = command.request;
      Cache(std::move(op));
      return true;
    default:
      break;
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

void NbdConnection::AnswerBlockStatus(std::unique_ptr<InFlight> op) {
  const uint64_t offset = op->request.offset;
  const auto length = static_cast<uint32_t>(op->request.length);
  op->status.resize(negotiated_.contexts.size());
  bool ask_device = false;
  for (size_t i = 0; i < negotiated_.contexts.size(); ++i) {
    absl::StatusOr<std::vector<NbdStatusRun>> runs;
    if (negotiated_.contexts[i] == NbdContext::kHydration) {
      runs = HydrationRuns(spec_.describe_hydration(offset, length), offset, length,
                           spec_.min_block_size);
    } else if (device_.info().caps.block_status) {
      ask_device = true;  // answered in OnDeviceDone
      continue;
    } else {
      runs = std::vector<NbdStatusRun>{{.length = length, .flags = 0}};  // all data
    }
    if (!runs.ok()) {
      Fail(*op, runs.status());
      return Finish(op.release());
    }
    op->status[i] = *std::move(runs);
  }
  if (!ask_device) return Finish(op.release());
  op->request.extents = &op->extents;
  op->request.context = op.get();
  op->request.on_complete = &OnDeviceDone;
  InFlight* const submitted = op.release();  // may complete inline
  device_.Submit(submitted->request);
}

void NbdConnection::Cache(std::unique_ptr<InFlight> op) {
  if (!spec_.hydrate_range) return Finish(op.release());  // advisory: nothing to do
  if (cache_workers_ == nullptr) {
    cache_workers_ = std::make_unique<CacheWorkers>(kCacheThreads, [this](InFlight& cached) {
      const absl::Status status = spec_.hydrate_range(cached.request.offset, cached.request.length);
      if (!status.ok()) Fail(cached, status);
      Finish(&cached);
    });
  }
  cache_workers_->Push(*op.release());
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
  NbdConnection& owner = *op->owner;
  if (status.ok() && request.op == Op::kBlockStatus) {
    const std::vector<NbdContext>& contexts = owner.negotiated_.contexts;
    const size_t i =
        std::find(contexts.begin(), contexts.end(), NbdContext::kAllocation) - contexts.begin();
    absl::StatusOr<std::vector<NbdStatusRun>> runs =
        AllocationRuns(op->extents, request.offset, static_cast<uint32_t>(request.length),
                       owner.spec_.min_block_size);
    if (runs.ok()) {
      op->status[i] = *std::move(runs);
    } else {
      status = runs.status();
    }
  }
  if (!status.ok()) Fail(*op, status);
  owner.Finish(op);
}

void NbdConnection::Fail(InFlight& op, const absl::Status& status) {
  op.error = NbdErrorFor(op.request.op, status);
  op.message = std::string(status.message());
  op.error_at_offset = true;
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
  if (op.command == nbd::kCmdBlockStatus && op.error == 0) {
    std::vector<NbdContextAnswer> answers;
    for (size_t i = 0; i < op.status.size(); ++i)
      answers.push_back({.context = negotiated_.contexts[i], .runs = op.status[i]});
    nbd::WireWriter reply;
    EncodeBlockStatusReply(op.cookie, answers, op.req_one ? 1 : spec_.max_status_descriptors,
                           reply);
    const std::span<const std::byte> pieces[] = {reply.data()};
    return stream_.Write(pieces);
  }
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
              negotiated_.structured_replies, header);
  const std::span<const std::byte> pieces[] = {header.data(), {op.buffer.data(), data_length}};
  return stream_.Write(pieces);
}

}  // namespace blkclone::internal

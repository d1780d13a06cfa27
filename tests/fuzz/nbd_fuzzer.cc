// libFuzzer target: arbitrary bytes as everything an NBD client sends, through
// a whole server session (handshake, request checks, a device, replies) over an
// in-memory stream instead of a socket.
//
// The first input byte picks the setting: bit 0 puts a valid handshake in front
// of the rest (so most inputs reach the request parser), bit 1 makes that
// handshake negotiate structured replies and the metadata contexts (for block
// status), bit 2 exports the device read-only, bit 3 gives the export its
// hooks: a hydration map (which answers wrongly for ranges over 512 KiB) and
// a CACHE that succeeds at once.
// Limits are tiny (16 KiB, 4 requests in flight) so that reading pauses often.
// Every session's reply writer runs on one thread kept for the whole run.
// Besides memory errors and hangs, it traps when a request the parser lets
// through breaks a rule it should have checked.
//
//   cmake --preset fuzz && cmake --build --preset fuzz
//   build/fuzz/tests/nbd_fuzzer -max_total_time=60 tests/fuzz/corpus/nbd
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/nbd_connection.hpp"
#include "blkclone/internal/nbd_export.hpp"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/internal/nbd_transmission.hpp"
#include "blkclone/testing/memory_device.hpp"

namespace blkclone {
namespace {

namespace nbd = internal::nbd;

void Require(bool condition) {
  if (!condition) __builtin_trap();
}

// Serves the input to the session, then end of stream; swallows the replies,
// none of which may exceed the largest payload plus a header.
class InputStream final : public internal::NbdStream {
 public:
  explicit InputStream(std::span<const std::byte> input) : input_(input) {}

  absl::Status Read(std::span<std::byte> buffer) override {
    if (stopped_.load() || buffer.size() > input_.size()) {
      input_ = {};
      return absl::UnavailableError("end of input");
    }
    if (!buffer.empty()) std::memcpy(buffer.data(), input_.data(), buffer.size());
    input_ = input_.subspan(buffer.size());
    return absl::OkStatus();
  }
  absl::Status Write(std::span<const std::span<const std::byte>> pieces) override {
    if (stopped_.load()) return absl::UnavailableError("disconnected");
    for (std::span<const std::byte> piece : pieces) Require(piece.size() <= (16 << 10) + 64);
    return absl::OkStatus();
  }
  void StopReading() override { stopped_.store(true); }
  void Disconnect() override { stopped_.store(true); }

 private:
  std::span<const std::byte> input_;  // touched by the session's reading thread only
  std::atomic<bool> stopped_{false};
};

// Runs each session's writer on the same thread: a new thread per input cost
// most of the run's time (ASan maps and unmaps every thread's stacks).
class ReusedThread final : public internal::NbdSessionThreads {
 public:
  ReusedThread() : thread_([this] { Loop(); }) {}
  ~ReusedThread() override {
    {
      internal::MutexLock lock(mu_);
      exiting_ = true;
      cv_.SignalAll();
    }
    thread_.join();
  }

  void RunBoth(absl::FunctionRef<void()> reader, absl::FunctionRef<void()> writer) override {
    {
      internal::MutexLock lock(mu_);
      job_ = &writer;
      cv_.SignalAll();
    }
    reader();
    internal::MutexLock lock(mu_);
    cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ == nullptr; });
  }

 private:
  void Loop() {
    for (;;) {
      const absl::FunctionRef<void()>* job;
      {
        internal::MutexLock lock(mu_);
        cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return exiting_ || job_ != nullptr;
        });
        if (job_ == nullptr) return;
        job = job_;
      }
      (*job)();
      internal::MutexLock lock(mu_);
      job_ = nullptr;  // RunBoth may return now
      cv_.SignalAll();
    }
  }

  internal::Mutex mu_;
  internal::CondVar cv_;
  const absl::FunctionRef<void()>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool exiting_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // declared last: starts once the members it uses exist
};

// What a well-behaved client sends to get into transmission.
std::vector<std::byte> Handshake(bool structured) {
  nbd::WireWriter out;
  out.U32(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes);
  if (structured) {
    out.U64(nbd::kOptionMagic).U32(nbd::kOptStructuredReply).U32(0);
    const absl::string_view contexts[] = {"base:allocation", "blkclone:hydrated"};
    nbd::WireWriter query;
    query.U32(0).U32(2);
    for (absl::string_view context : contexts)
      query.U32(static_cast<uint32_t>(context.size())).String(context);
    out.U64(nbd::kOptionMagic)
        .U32(nbd::kOptSetMetaContext)
        .U32(static_cast<uint32_t>(query.data().size()))
        .Bytes(query.data());
  }
  out.U64(nbd::kOptionMagic).U32(nbd::kOptGo).U32(6).U32(0).U16(0);
  return {out.data().begin(), out.data().end()};
}

// Hydrated and not in turns of 64 KiB; for a range over 512 KiB one run too
// short, which the server must answer with EIO.
std::vector<NbdHydrationRun> DescribeHydration(uint64_t offset, uint64_t length) {
  std::vector<NbdHydrationRun> runs;
  const uint64_t end = offset + length - (length > (512 << 10) ? 512 : 0);
  for (uint64_t at = offset; at < end;) {
    const uint64_t next = std::min(end, (at / 65536 + 1) * 65536);
    runs.push_back({.offset = at, .length = next - at, .hydrated = at / 65536 % 2 == 0});
    at = next;
  }
  return runs;
}

// Every request the parser passes is one the device accepts as it is (block
// status and CACHE given an extent list). Tries a header wherever the request
// magic appears: elsewhere the parser refuses it.
void CheckParser(std::span<const std::byte> bytes, const internal::NbdExport& spec) {
  const internal::NbdNegotiated negotiated = {.structured_replies = true,
                                              .contexts = {internal::NbdContext::kAllocation}};
  static constexpr std::byte kMagic[] = {
      std::byte{nbd::kRequestMagic >> 24}, std::byte{(nbd::kRequestMagic >> 16) & 0xff},
      std::byte{(nbd::kRequestMagic >> 8) & 0xff}, std::byte{nbd::kRequestMagic & 0xff}};
  for (size_t at = 0; at + nbd::kRequestHeaderSize <= bytes.size(); ++at) {
    const void* found = memmem(bytes.data() + at, bytes.size() - at, kMagic, sizeof(kMagic));
    if (found == nullptr) return;
    at = static_cast<const std::byte*>(found) - bytes.data();
    if (at + nbd::kRequestHeaderSize > bytes.size()) return;
    const internal::NbdRequestHeader header =
        internal::DecodeRequestHeader(bytes.subspan(at).first<nbd::kRequestHeaderSize>());
    internal::NbdCommand command = internal::InterpretRequest(header, spec, negotiated);
    if (command.kind == internal::NbdCommand::Kind::kReject ||
        command.kind == internal::NbdCommand::Kind::kBadMagic ||
        command.kind == internal::NbdCommand::Kind::kDisconnect)
      continue;
    Request& request = command.request;
    const bool has_data = request.op == Op::kRead || request.op == Op::kWrite;
    static std::byte probe;
    static std::vector<Extent> extents;
    request.data = has_data ? &probe : nullptr;
    request.extents = request.op == Op::kBlockStatus ? &extents : nullptr;
    Require((command.kind == internal::NbdCommand::Kind::kSubmit) ==
            (request.op != Op::kBlockStatus));
    Require(ValidateRequest(spec.rules, request).ok());
    Require(!has_data || request.length <= spec.max_payload);
    Require(request.op == Op::kFlush || request.length > 0);
    Require(!ModifiesData(request.op) || !spec.rules.caps.read_only);
  }
}

void Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t mode = data[0];
  static std::unique_ptr<MemoryDevice> device = *MemoryDevice::Create({.size = 1 << 20});
  NbdServerOptions options;
  options.read_only = (mode & 4) != 0;
  if (mode & 8) {
    options.describe_hydration = &DescribeHydration;
    options.hydrate_range = [](uint64_t, uint64_t) { return absl::OkStatus(); };
  }
  options.max_in_flight_bytes = 16 << 10;
  options.max_in_flight_requests = 4;
  absl::StatusOr<internal::NbdExport> spec = internal::MakeNbdExport(device->info(), options);
  Require(spec.ok());

  std::vector<std::byte> input;
  if (mode & 1) input = Handshake((mode & 2) != 0);
  const auto* rest = reinterpret_cast<const std::byte*>(data + 1);
  input.insert(input.end(), rest, rest + size - 1);
  CheckParser(std::span(rest, size - 1), *spec);

  InputStream stream(input);
  AnyBlockDevice view = AnyBlockDevice::Borrow(*device);
  internal::NbdConnection connection(stream, view, *spec,
                                     {.max_in_flight_bytes = options.max_in_flight_bytes,
                                      .max_in_flight_requests = options.max_in_flight_requests});
  static ReusedThread writer_thread;
  connection.Serve(writer_thread);
}

}  // namespace
}  // namespace blkclone

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  blkclone::Run(data, size);
  return 0;
}

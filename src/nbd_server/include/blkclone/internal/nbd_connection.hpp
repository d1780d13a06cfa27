// NbdConnection: one client's session, from the handshake to the last reply,
// over any NbdStream (a socket in the server, memory in the fuzzer).
//
// Requests are pipelined: the reading thread (the one that calls Serve) decodes
// a request, submits it to the device and reads the next one at once. Device
// completions, on whatever thread the device uses, only queue the finished
// request; a writer thread sends replies in completion order. So a client that
// does not read its replies blocks its own writer and never a device thread.
// Reading pauses while the connection holds max_in_flight_requests requests or
// max_in_flight_bytes of data buffers (and block status replies), counted
// until their replies have gone. Block status is answered by the device and
// the export's hydration hook (called on the reading thread), CACHE by its
// hydrate hook on worker threads started at the first CACHE.
//
//   NbdConnection connection(stream, device, spec, {.max_in_flight_bytes = 64 << 20,
//                                                   .max_in_flight_requests = 256});
//   connection.Serve();  // returns once the client left and everything completed
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "absl/functional/function_ref.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/nbd_export.hpp"
#include "blkclone/internal/nbd_handshake.hpp"
#include "blkclone/internal/nbd_stream.hpp"
#include "blkclone/internal/nbd_transmission.hpp"

namespace blkclone::internal {

struct NbdLimits {
  uint64_t max_in_flight_bytes = 64 << 20;
  uint32_t max_in_flight_requests = 256;
};

// Where a session's two loops run: RunBoth calls `writer` on another thread and
// `reader` on the calling one, and returns once both have returned. Serve()
// starts a thread per session; the fuzzer reuses one thread for all sessions.
class NbdSessionThreads {
 public:
  virtual ~NbdSessionThreads() = default;
  virtual void RunBoth(absl::FunctionRef<void()> reader, absl::FunctionRef<void()> writer) = 0;
};

// Threads: Serve runs on one thread and starts the writer thread; device
// completions and CACHE workers finish requests on theirs; Stop may be called
// from any thread. Locking: mu_ guards the ready queue, the in-flight counts
// and the flags.
class NbdConnection {
 public:
  NbdConnection(NbdStream& stream, AnyBlockDevice& device, const NbdExport& spec, NbdLimits limits);
  ~NbdConnection();
  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  // Runs the handshake, then serves requests until the client disconnects,
  // breaks the protocol or Stop() is called. Returns once every request it
  // submitted has completed and its reply was sent (or the connection broke).
  void Serve();
  // The same, with the writer run by `threads`.
  void Serve(NbdSessionThreads& threads);
  // Stops reading requests; those already received still get their replies.
  void Stop();

 private:
  struct InFlight;
  class CacheWorkers;

  void ReadRequests();
  // Handles one decoded request; false once the session must end.
  bool Handle(const NbdRequestHeader& header);
  // Answers from the hydration hook at once, and from the device (or as all
  // data when it cannot tell) for base:allocation.
  void AnswerBlockStatus(std::unique_ptr<InFlight> op);
  // Hands the range to the hydrate hook on a worker, or succeeds at once.
  void Cache(std::unique_ptr<InFlight> op);
  // Waits for room for one more request holding `bytes` of buffer; false if the
  // connection is stopping or broken meanwhile.
  bool Reserve(uint64_t bytes);
  // Returns an op's share of the limits.
  void Release(const InFlight& op);
  static void OnDeviceDone(Request& request, absl::Status status);
  // Fails `op` with the NBD error for `status`, at the request's offset.
  static void Fail(InFlight& op, const absl::Status& status);
  // Queues the reply of a finished op for the writer.
  void Finish(InFlight* op);
  void WriteReplies();
  [[nodiscard]] absl::Status SendReply(const InFlight& op);

  NbdStream& stream_;
  AnyBlockDevice& device_;
  const NbdExport& spec_;
  const NbdLimits limits_;
  NbdNegotiated negotiated_;  // set by the handshake, before the writer starts

  Mutex mu_;
  CondVar ready_cv_;  // a reply was queued, or reading ended
  CondVar room_cv_;   // an op was released, or stopping/broken was set
  std::deque<InFlight*> ready_ ABSL_GUARDED_BY(mu_);
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // reserved, reply not yet handled
  uint64_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a reply could not be sent
  // Started by the reading thread at the first CACHE. Declared last, so that
  // its threads are joined before anything they use is destroyed.
  std::unique_ptr<CacheWorkers> cache_workers_;
};

}  // namespace blkclone::internal

// NbdClientConnection: one connection of an NbdDevice and the thread that drives it.
//
// The thread polls the libnbd socket and its wake-up eventfd. It sends what
// the dispatcher queued (up to max_in_flight commands), completes what the
// server answered, fails requests whose deadline passed, and reconnects after
// a loss. A request past its deadline on the wire resets the connection:
// libnbd cannot cancel one command, and only closing the handle guarantees that
// it no longer writes into the request's buffer.
//
// Threading: every libnbd call for the handle happens on this thread, and
// libnbd runs the command callbacks inside those calls, so the client and the
// command lists here need no lock. Shared state lives in the NbdDispatcher.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "blkclone/internal/nbd_client.hpp"
#include "blkclone/internal/nbd_client_command.hpp"
#include "blkclone/internal/nbd_dispatcher.hpp"
#include "blkclone/internal/nbd_durability.hpp"
#include "blkclone/nbd_options.hpp"

namespace blkclone::internal {

struct NbdConnectionConfig {
  std::string uri;
  NbdOptions options;
  NbdExportInfo expected;  // every reconnection must find this export again
  NbdFeatures features;
};

class NbdClientConnection {
 public:
  // Starts the thread, driving `client` (established) as connection `index`.
  NbdClientConnection(int index, const NbdConnectionConfig& config, NbdDispatcher& dispatcher,
                NbdDurability& durability, std::unique_ptr<NbdClient> client);
  // Joins the thread, which ends after NbdDispatcher::Stop having completed
  // every request it held.
  ~NbdClientConnection();
  NbdClientConnection(const NbdClientConnection&) = delete;
  NbdClientConnection& operator=(const NbdClientConnection&) = delete;

 private:
  // Why the connection went away, for the requests that were on it.
  struct Loss {
    absl::Status cause;  // OK while the connection is alive
    // False when a timeout reset it: their own deadlines limit those requests.
    bool counts = true;
  };

  enum class Phase : uint8_t {
    kEstablished,
    kHandshake,  // an attempt is under way
    kWaiting,    // for the next attempt
    kDown,       // attempts exhausted, until a request asks for another round
  };

  void Run();
  void MaybeStartAttempt(NbdClock::time_point now);
  void SendQueued();
  // Sleeps in poll(2) until the socket or the eventfd is ready, or `until`.
  void PollOnce(NbdClock::time_point until);
  NbdClock::time_point WakeUpTime(NbdClock::time_point now) const;
  // Reacts to the end of a handshake or the loss of the connection.
  void CheckLink(NbdClock::time_point now);
  void FinishHandshake(NbdClock::time_point now);
  void AttemptFailed(NbdClock::time_point now, const absl::Status& cause);
  void LinkLost(NbdClock::time_point now, const Loss& loss);
  void GoDown(const absl::Status& cause);
  void EnforceDeadlines(NbdClock::time_point now);
  // Closes the handle and deals with every command it released.
  void CloseClient(NbdClock::time_point now, const Loss& loss);
  // Completes, continues or sends again each released command.
  void Handle(NbdCommandList& released, NbdClock::time_point now, const Loss& loss);
  void Shutdown();
  // Accounts for a command stage the server carried out: counts a write, or
  // checks what a flush made durable (kDataLoss if a loss may have undone it).
  absl::Status Settle(const NbdClientCommand& command);
  // The next stage of a command whose stage succeeded.
  void Advance(NbdClientCommand& command);

  // Whether `loss` counts against the request's max_request_retries.
  bool CountsAsLoss(const NbdClientCommand& command, const Loss& loss) const;
  absl::Status DeadlineError(const NbdClientCommand& command) const;
  std::chrono::milliseconds Backoff() const;

  const int index_;
  const NbdConnectionConfig config_;
  NbdDispatcher& dispatcher_;
  NbdDurability& durability_;

  std::unique_ptr<NbdClient> client_;
  Phase phase_ = Phase::kEstablished;
  NbdCommandList next_stage_;            // answered, with another stage to send
  NbdClock::time_point established_at_;  // when the current link came up
  int attempts_ = 0;                     // failed attempts since the loss
  NbdClock::time_point next_attempt_;
  NbdClock::time_point attempt_deadline_;
  absl::Status socket_error_;  // from the last Notify
  std::thread thread_;         // last: starts once the rest is initialised
};

}  // namespace blkclone::internal

// NbdDispatcher: what the connections of one NbdDevice share. Requests wait
// here for a connection, in deadline order; each connection's link state
// decides whether a new request may wait or fails at once; each connection
// thread has an eventfd to be woken by; commands come from a pool.
//
// Link states and what requests do meanwhile:
//   kConnected     requests are sent;
//   kReconnecting  lost, attempts under way: requests wait (up to their deadline);
//   kDown          attempts exhausted: with no connection left to wait for,
//                  queued and new requests fail at once with kUnavailable, and a
//                  new request asks each down connection for one more round of
//                  attempts, so the device recovers when the server returns.
//
// Thread-safe. Methods that take the lock complete nothing: commands to fail
// are handed back, and the caller Finishes them with no lock held (a
// completion may submit again).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/nbd_client_command.hpp"
#include "blkclone/internal/object_pool.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/nbd_options.hpp"

namespace blkclone::internal {

enum class NbdLinkState : uint8_t { kConnected, kReconnecting, kDown };

class NbdDispatcher {
 public:
  // `connections` connections, all connected to begin with. Fails only if
  // the eventfds cannot be created.
  static absl::StatusOr<std::unique_ptr<NbdDispatcher>> Create(
      std::string uri, int connections, std::chrono::milliseconds request_timeout);
  NbdDispatcher(const NbdDispatcher&) = delete;
  NbdDispatcher& operator=(const NbdDispatcher&) = delete;

  // A command from the pool; give it back with Recycle once its request is done.
  NbdClientCommand& NewCommand();
  void Recycle(NbdClientCommand& command);
  // Recycles `command` and completes its request with `status`.
  void Finish(NbdClientCommand& command, absl::Status status);
  // Finishes every command of `commands` with the status `error_for` gives it.
  template <class ErrorFor>
  void FinishAll(NbdCommandList& commands, ErrorFor error_for) {
    while (!commands.empty()) {
      NbdClientCommand& command = commands.front();
      commands.pop_front();
      Finish(command, error_for(command));
    }
  }

  // Queues `command` with its deadline and wakes a connection to send it.
  // Fails (and queues nothing) once Stop was called, or while every connection
  // is down; the caller then fails the request with that error.
  [[nodiscard]] absl::Status Enqueue(NbdClientCommand& command);

  // ---- For connection threads ----
  int wake_fd(int connection) const { return wake_fds_[connection].get(); }
  bool stopping() const;
  // Moves queued commands to `out` until the connection holds `capacity`; it
  // holds `owned` already.
  void Take(int connection, size_t owned, size_t capacity, NbdCommandList& out);
  // Queues commands lost with a connection again, by deadline, for any connection.
  void Requeue(NbdCommandList& commands);
  // Moves queued commands whose deadline has passed to `out`.
  void TakeExpired(NbdClock::time_point now, NbdCommandList& out);
  // The earliest deadline in the queue.
  std::optional<NbdClock::time_point> NextDeadline() const;
  // Records a connection's state; `cause` says why it is not connected. When
  // no connection is left that requests may wait for, moves the queued ones
  // to `stranded`.
  void SetState(int connection, NbdLinkState state, const absl::Status& cause,
                NbdCommandList& stranded);
  // True once after a request found this down connection: time for another
  // round of attempts.
  bool TakeRetryRound(int connection);
  void CountTimeouts(uint64_t count);

  // ---- For the device ----
  // Later Enqueue calls fail with kCancelled; wakes every connection thread.
  void Stop();
  // Moves every queued command to `out`.
  void TakeAll(NbdCommandList& out);
  NbdStats stats() const;

 private:
  struct Slot {
    NbdLinkState state = NbdLinkState::kConnected;
    size_t owned = 0;          // commands the connection holds (an estimate between Takes)
    bool round_asked = false;  // a request found it down
    bool in_a_round = false;   // down, but trying once more
  };

  NbdDispatcher(std::string uri, std::chrono::milliseconds request_timeout,
                std::vector<UniqueFd> wake_fds);

  // Whether some connection is connected or reconnecting.
  bool AnyUsableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake(int connection) const;
  void WakeAll() const;

  const std::string uri_;
  const std::chrono::milliseconds request_timeout_;
  const std::vector<UniqueFd> wake_fds_;  // eventfds, one per connection
  ObjectPool<NbdClientCommand> pool_;
  mutable Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  NbdCommandList queue_ ABSL_GUARDED_BY(mu_);  // by deadline
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status down_cause_ ABSL_GUARDED_BY(mu_);
  uint64_t reconnects_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t retries_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t timeouts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blkclone::internal

// NbdClientConnection: the event loop of one connection.
#include "blkclone/internal/nbd_client_connection.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// Errors that mean the connection went away, not that the server refused the
// command: libnbd fails commands with ENOTCONN when the connection dies, and
// a server shutting down answers ESHUTDOWN. Such commands are sent again.
bool IsLinkError(int error_number) {
  return error_number == ENOTCONN || error_number == ESHUTDOWN || error_number == ECONNRESET ||
         error_number == EPIPE;
}

}  // namespace

NbdClientConnection::NbdClientConnection(int index, const NbdConnectionConfig& config,
                             NbdDispatcher& dispatcher, NbdDurability& durability,
                             std::unique_ptr<NbdClient> client)
    : index_(index),
      config_(config),
      dispatcher_(dispatcher),
      durability_(durability),
      client_(std::move(client)),
      established_at_(NbdClock::now()) {
  thread_ = std::thread([this] { Run(); });
}

NbdClientConnection::~NbdClientConnection() { thread_.join(); }

void NbdClientConnection::Run() {
  while (!dispatcher_.stopping()) {
    NbdClock::time_point now = NbdClock::now();
    if (phase_ == Phase::kWaiting || phase_ == Phase::kDown) MaybeStartAttempt(now);
    if (phase_ == Phase::kEstablished) SendQueued();
    PollOnce(WakeUpTime(now));
    now = NbdClock::now();
    CheckLink(now);
    if (phase_ == Phase::kEstablished) {
      NbdCommandList released;
      client_->TakeReleased(released);
      Handle(released, now, Loss{});
    }
    EnforceDeadlines(now);
  }
  Shutdown();
}

void NbdClientConnection::MaybeStartAttempt(NbdClock::time_point now) {
  if (phase_ == Phase::kDown) {
    if (config_.options.reconnect_attempts == 0 || !dispatcher_.TakeRetryRound(index_)) return;
    attempts_ = 0;
    phase_ = Phase::kWaiting;
    next_attempt_ = now;
  }
  if (now < next_attempt_) return;
  socket_error_ = absl::OkStatus();
  absl::StatusOr<std::unique_ptr<NbdClient>> client = NbdClient::Start(config_.uri);
  if (!client.ok()) return AttemptFailed(now, client.status());
  client_ = *std::move(client);
  phase_ = Phase::kHandshake;
  attempt_deadline_ = now + config_.options.connect_timeout;
}

void NbdClientConnection::SendQueued() {
  NbdCommandList batch;
  batch.splice(batch.end(), next_stage_);
  dispatcher_.Take(index_, client_->in_flight().size() + batch.size(),
                   static_cast<size_t>(config_.options.max_in_flight), batch);
  while (!batch.empty()) {
    NbdClientCommand& command = batch.front();
    batch.pop_front();
    client_->Send(command, WireCommand(command, config_.features));
  }
}

NbdClock::time_point NbdClientConnection::WakeUpTime(NbdClock::time_point now) const {
  NbdClock::time_point until = NbdClock::time_point::max();
  if (phase_ == Phase::kHandshake) until = attempt_deadline_;
  if (phase_ == Phase::kWaiting) until = next_attempt_;
  if (client_ != nullptr) {
    for (const NbdClientCommand& command : client_->in_flight()) {
      if (command.released) return now;  // refused while being sent: handle it at once
      until = std::min(until, command.deadline);
    }
  }
  if (std::optional<NbdClock::time_point> queued = dispatcher_.NextDeadline())
    until = std::min(until, *queued);
  return until;
}

void NbdClientConnection::PollOnce(NbdClock::time_point until) {
  pollfd fds[2] = {{.fd = dispatcher_.wake_fd(index_), .events = POLLIN, .revents = 0},
                   {.fd = -1, .events = 0, .revents = 0}};
  nfds_t count = 1;
  if (client_ != nullptr) {
    fds[1] = {.fd = client_->fd(), .events = client_->events(), .revents = 0};
    count = 2;
  }
  int timeout_ms = -1;
  if (until != NbdClock::time_point::max()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - NbdClock::now());
    timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT_MAX));
  }
  if (::poll(fds, count, timeout_ms) <= 0) return;  // timed out, or EINTR: the loop looks again
  if (fds[0].revents != 0) {
    uint64_t wakeups;
    // Resets the count; the eventfd is nonblocking, so a spurious wake-up cannot hang here.
    [[maybe_unused]] const ssize_t n = ::read(fds[0].fd, &wakeups, sizeof wakeups);
  }
  if (count == 2 && fds[1].revents != 0) socket_error_ = client_->Notify(fds[1].revents);
}

void NbdClientConnection::CheckLink(NbdClock::time_point now) {
  if (client_ == nullptr) return;
  const bool failed = !socket_error_.ok() || client_->dead();
  if (phase_ == Phase::kHandshake) {
    if (client_->established()) return FinishHandshake(now);
    if (failed)
      return AttemptFailed(now, socket_error_.ok()
                                    ? absl::UnavailableError("closed during the NBD handshake")
                                    : socket_error_);
    if (now >= attempt_deadline_)
      return AttemptFailed(
          now, absl::DeadlineExceededError(absl::StrCat(
                   "no NBD handshake within ", config_.options.connect_timeout.count(), " ms")));
    return;
  }
  if (failed)
    LinkLost(now, {socket_error_.ok() ? absl::UnavailableError("the server closed the connection")
                                      : socket_error_});
}

void NbdClientConnection::FinishHandshake(NbdClock::time_point now) {
  absl::StatusOr<NbdExportInfo> found = client_->Describe();
  if (!found.ok()) return AttemptFailed(now, found.status());
  if (*found != config_.expected)
    return AttemptFailed(now, absl::FailedPreconditionError(absl::StrCat(
                                  "the server now offers another export (", found->size,
                                  " bytes, or other block sizes or flags)")));
  phase_ = Phase::kEstablished;
  established_at_ = now;
  attempts_ = 0;
  NbdCommandList none;  // a connected link strands nothing
  dispatcher_.SetState(index_, NbdLinkState::kConnected, absl::OkStatus(), none);
}

void NbdClientConnection::AttemptFailed(NbdClock::time_point now, const absl::Status& cause) {
  if (client_ != nullptr) CloseClient(now, {cause});
  ++attempts_;
  if (attempts_ >= config_.options.reconnect_attempts) return GoDown(cause);
  phase_ = Phase::kWaiting;
  next_attempt_ = now + Backoff();
}

void NbdClientConnection::LinkLost(NbdClock::time_point now, const Loss& loss) {
  durability_.LinkLost();
  const bool reconnect = config_.options.reconnect_attempts > 0;
  if (reconnect) {
    // First the state: requests queued from now on wake a connected connection.
    NbdCommandList none;  // a reconnecting link strands nothing
    dispatcher_.SetState(index_, NbdLinkState::kReconnecting, loss.cause, none);
    attempts_ = 0;
    phase_ = Phase::kWaiting;
    next_attempt_ = now;
  }
  CloseClient(now, loss);
  // After: what was requeued fails with the rest if no connection is left.
  if (!reconnect) GoDown(loss.cause);
}

void NbdClientConnection::GoDown(const absl::Status& cause) {
  phase_ = Phase::kDown;
  NbdCommandList stranded;
  dispatcher_.SetState(index_, NbdLinkState::kDown, cause, stranded);
  dispatcher_.FinishAll(stranded, [&](const NbdClientCommand& command) {
    return absl::UnavailableError(absl::StrCat(DescribeCommand(command), ": lost ", config_.uri,
                                               " and could not reconnect: ", cause.message()));
  });
}

void NbdClientConnection::EnforceDeadlines(NbdClock::time_point now) {
  if (phase_ == Phase::kEstablished &&
      std::any_of(client_->in_flight().begin(), client_->in_flight().end(),
                  [&](const NbdClientCommand& command) { return command.deadline <= now; })) {
    LinkLost(
        now,
        {.cause = absl::DeadlineExceededError(absl::StrCat(
             "no reply within ", config_.options.request_timeout.count(), " ms, connection reset")),
         .counts = false});
  }
  NbdCommandList expired;
  dispatcher_.TakeExpired(now, expired);
  dispatcher_.CountTimeouts(expired.size());
  dispatcher_.FinishAll(expired, [&](const NbdClientCommand& command) { return DeadlineError(command); });
}

void NbdClientConnection::CloseClient(NbdClock::time_point now, const Loss& loss) {
  NbdCommandList released;
  client_->Close(released);
  client_.reset();
  Handle(released, now, loss);
  // Answered commands with a stage to go are sent again by whoever is connected.
  dispatcher_.Requeue(next_stage_);
}

void NbdClientConnection::Handle(NbdCommandList& released, NbdClock::time_point now, const Loss& loss) {
  NbdCommandList retry;
  while (!released.empty()) {
    NbdClientCommand& command = released.front();
    released.pop_front();
    if (command.answered && command.error == 0) {
      if (absl::Status settled = Settle(command); !settled.ok()) {
        dispatcher_.Finish(command, std::move(settled));
        continue;
      }
      Advance(command);
      if (command.stage == NbdClientCommand::Stage::kDone) {
        dispatcher_.Finish(command, absl::OkStatus());
      } else {
        next_stage_.push_back(command);
      }
    } else if (command.answered && !IsLinkError(command.error)) {
      dispatcher_.Finish(
          command, command.refused.ok() ? ServerError(command, command.error) : command.refused);
    } else if (now >= command.deadline) {
      dispatcher_.CountTimeouts(1);
      dispatcher_.Finish(command, DeadlineError(command));
    } else if (const bool counts = CountsAsLoss(command, loss);
               counts &&
               command.losses >= static_cast<uint32_t>(config_.options.max_request_retries)) {
      dispatcher_.Finish(
          command, absl::UnavailableError(absl::StrCat(
                       DescribeCommand(command), ": the connection to ", config_.uri, " was lost ",
                       command.losses + 1, " times, the last time: ", loss.cause.message())));
    } else {
      if (counts) {
        ++command.losses;
        command.last_loss = now;
      }
      retry.push_back(command);
    }
  }
  dispatcher_.Requeue(retry);
}

void NbdClientConnection::Shutdown() {
  NbdCommandList released;
  if (client_ != nullptr) {
    client_->Close(released);
    client_.reset();
  }
  dispatcher_.FinishAll(released, [&](NbdClientCommand& command) {
    if (!command.answered || command.error != 0) return ClosedError(command);
    BLKCLONE_RETURN_IF_ERROR(Settle(command));
    Advance(command);
    return command.stage == NbdClientCommand::Stage::kDone ? absl::OkStatus() : ClosedError(command);
  });
  dispatcher_.FinishAll(next_stage_,
                        [](const NbdClientCommand& command) { return ClosedError(command); });
}

absl::Status NbdClientConnection::Settle(const NbdClientCommand& command) {
  if (!config_.features.send_flush) return absl::OkStatus();  // writes are durable at once
  const NbdWireCommand sent = WireCommand(command, config_.features);
  if (sent.op == Op::kFlush) {
    if (durability_.FlushDone(command.flush_covers)) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat(
        DescribeCommand(command), ": a connection to ", config_.uri,
        " was lost after writes it had not flushed; a server restart may have lost them"));
  }
  if (ModifiesData(sent.op) && !sent.fua) durability_.WriteDone();
  return absl::OkStatus();
}

void NbdClientConnection::Advance(NbdClientCommand& command) {
  AdvanceCommand(command, config_.features);
  // An emulated FUA covers the write just done, and whatever completed before it.
  if (command.stage == NbdClientCommand::Stage::kFuaFlush) command.flush_covers = durability_.writes();
}

bool NbdClientConnection::CountsAsLoss(const NbdClientCommand& command, const Loss& loss) const {
  // A server restart breaks every connection, one after the other: a request
  // moved to a connection that was up before its last loss, and lost again,
  // lost it to the same outage.
  return loss.counts && established_at_ > command.last_loss;
}

absl::Status NbdClientConnection::DeadlineError(const NbdClientCommand& command) const {
  return absl::DeadlineExceededError(
      absl::StrCat(DescribeCommand(command), ": not done within the request timeout of ",
                   config_.options.request_timeout.count(), " ms (", config_.uri, ")"));
}

std::chrono::milliseconds NbdClientConnection::Backoff() const {
  std::chrono::milliseconds delay = config_.options.reconnect_initial_delay;
  for (int i = 1; i < attempts_ && delay < config_.options.reconnect_max_delay; ++i) delay *= 2;
  return std::min(delay, config_.options.reconnect_max_delay);
}

}  // namespace blkclone::internal

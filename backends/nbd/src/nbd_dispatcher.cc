// NbdDispatcher: the queue, link states and wake-ups shared by the connections.
#include "blkclone/internal/nbd_dispatcher.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"

namespace blkclone::internal {

absl::StatusOr<std::unique_ptr<NbdDispatcher>> NbdDispatcher::Create(
    std::string uri, int connections, std::chrono::milliseconds request_timeout) {
  std::vector<UniqueFd> wake_fds;
  for (int i = 0; i < connections; ++i) {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) return ErrnoStatus(errno, "eventfd");
    wake_fds.push_back(std::move(fd));
  }
  return std::unique_ptr<NbdDispatcher>(
      new NbdDispatcher(std::move(uri), request_timeout, std::move(wake_fds)));
}

NbdDispatcher::NbdDispatcher(std::string uri, std::chrono::milliseconds request_timeout,
                             std::vector<UniqueFd> wake_fds)
    : uri_(std::move(uri)),
      request_timeout_(request_timeout),
      wake_fds_(std::move(wake_fds)),
      slots_(wake_fds_.size()) {}

NbdClientCommand& NbdDispatcher::NewCommand() { return *pool_.Get(); }

void NbdDispatcher::Recycle(NbdClientCommand& command) { pool_.Put(&command); }

void NbdDispatcher::Finish(NbdClientCommand& command, absl::Status status) {
  Request& request = *command.request;
  Recycle(command);
  request.Complete(std::move(status));
}

absl::Status NbdDispatcher::Enqueue(NbdClientCommand& command) {
  std::optional<int> target;
  bool wake_all = false;
  {
    MutexLock lock(mu_);
    if (stopping_)
      return absl::CancelledError(
          absl::StrCat(DescribeCommand(command), ": the NBD device is closing"));
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& slot = slots_[i];
      if (slot.state == NbdLinkState::kDown && !slot.round_asked && !slot.in_a_round) {
        slot.round_asked = true;
        Wake(static_cast<int>(i));
      }
    }
    if (!AnyUsableLocked())
      return absl::UnavailableError(absl::StrCat(DescribeCommand(command), ": no connection to ",
                                                 uri_, " (", down_cause_.message(), ")"));
    // Taken under the lock, so deadlines enter the queue in order.
    command.deadline = NbdClock::now() + request_timeout_;
    // Reconnecting threads only need a wake-up to learn the first deadline.
    wake_all = queue_.empty();
    queue_.push_back(command);
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state != NbdLinkState::kConnected) continue;
      if (!target || slots_[i].owned < slots_[*target].owned) target = static_cast<int>(i);
    }
    // Counted at once, so that a burst spreads over the connections before
    // their threads get to Take.
    if (target) ++slots_[*target].owned;
  }
  if (target) {
    Wake(*target);
  } else if (wake_all) {
    WakeAll();
  }
  return absl::OkStatus();
}

bool NbdDispatcher::stopping() const {
  MutexLock lock(mu_);
  return stopping_;
}

void NbdDispatcher::Take(int connection, size_t owned, size_t capacity, NbdCommandList& out) {
  MutexLock lock(mu_);
  while (owned < capacity && !queue_.empty()) {
    NbdClientCommand& command = queue_.front();
    queue_.pop_front();
    out.push_back(command);
    ++owned;
  }
  slots_[connection].owned = owned;
}

void NbdDispatcher::Requeue(NbdCommandList& commands) {
  if (commands.empty()) return;
  {
    MutexLock lock(mu_);
    retries_ += commands.size();
    while (!commands.empty()) {
      NbdClientCommand& command = commands.front();
      commands.pop_front();
      auto later = std::find_if(queue_.begin(), queue_.end(), [&](const NbdClientCommand& queued) {
        return queued.deadline > command.deadline;
      });
      queue_.insert(later, command);
    }
  }
  WakeAll();
}

void NbdDispatcher::TakeExpired(NbdClock::time_point now, NbdCommandList& out) {
  MutexLock lock(mu_);
  while (!queue_.empty() && queue_.front().deadline <= now) {
    NbdClientCommand& command = queue_.front();
    queue_.pop_front();
    out.push_back(command);
  }
}

std::optional<NbdClock::time_point> NbdDispatcher::NextDeadline() const {
  MutexLock lock(mu_);
  if (queue_.empty()) return std::nullopt;
  return queue_.front().deadline;
}

void NbdDispatcher::SetState(int connection, NbdLinkState state, const absl::Status& cause,
                             NbdCommandList& stranded) {
  MutexLock lock(mu_);
  Slot& slot = slots_[connection];
  if (state == NbdLinkState::kConnected && slot.state != NbdLinkState::kConnected) ++reconnects_;
  slot.state = state;
  if (state != NbdLinkState::kReconnecting) slot.in_a_round = false;
  if (!cause.ok()) down_cause_ = cause;
  if (!AnyUsableLocked()) stranded.splice(stranded.end(), queue_);
}

bool NbdDispatcher::TakeRetryRound(int connection) {
  MutexLock lock(mu_);
  Slot& slot = slots_[connection];
  if (!slot.round_asked) return false;
  slot.round_asked = false;
  slot.in_a_round = true;
  return true;
}

void NbdDispatcher::CountTimeouts(uint64_t count) {
  MutexLock lock(mu_);
  timeouts_ += count;
}

void NbdDispatcher::Stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  WakeAll();
}

void NbdDispatcher::TakeAll(NbdCommandList& out) {
  MutexLock lock(mu_);
  out.splice(out.end(), queue_);
}

NbdStats NbdDispatcher::stats() const {
  MutexLock lock(mu_);
  NbdStats stats;
  stats.connections = static_cast<int>(slots_.size());
  stats.connected = static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) {
    return s.state == NbdLinkState::kConnected;
  }));
  stats.reconnects = reconnects_;
  stats.retries = retries_;
  stats.timeouts = timeouts_;
  return stats;
}

bool NbdDispatcher::AnyUsableLocked() const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [](const Slot& s) { return s.state != NbdLinkState::kDown; });
}

void NbdDispatcher::Wake(int connection) const {
  const uint64_t one = 1;
  // Fails only with EAGAIN, when the counter is saturated: a wake-up is pending anyway.
  [[maybe_unused]] const ssize_t written = ::write(wake_fds_[connection].get(), &one, sizeof one);
}

void NbdDispatcher::WakeAll() const {
  for (size_t i = 0; i < wake_fds_.size(); ++i) Wake(static_cast<int>(i));
}

}  // namespace blkclone::internal

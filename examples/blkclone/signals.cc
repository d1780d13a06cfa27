// Blocking and synchronous waiting for the termination signals.
#include "signals.hpp"

#include <cerrno>

namespace blkclone::cli {

TerminationSignals::TerminationSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

int TerminationSignals::Wait(std::chrono::milliseconds timeout) {
  const timespec wait = {.tv_sec = static_cast<time_t>(timeout.count() / 1000),
                         .tv_nsec = static_cast<long>(timeout.count() % 1000) * 1000000};
  for (;;) {
    const int signal = sigtimedwait(&set_, nullptr, &wait);
    if (signal > 0) return signal;
    if (errno != EINTR) return 0;
  }
}

}  // namespace blkclone::cli

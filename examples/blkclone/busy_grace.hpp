// BusyGrace: the second that a command waits for a lock's short-lived holder
// (status and check hold theirs for a moment) before it calls the lock taken.
//
//   BusyGrace grace;
//   while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
//     if (errno != EWOULDBLOCK || !grace.Wait()) return ...;
//   }
#pragma once

#include <chrono>
#include <thread>

namespace blkclone::cli {

class BusyGrace {
 public:
  // Sleeps a little and returns true, or returns false once the second is over.
  bool Wait() {
    if (std::chrono::steady_clock::now() >= give_up_) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  }

 private:
  const std::chrono::steady_clock::time_point give_up_ =
      std::chrono::steady_clock::now() + std::chrono::seconds(1);
};

}  // namespace blkclone::cli

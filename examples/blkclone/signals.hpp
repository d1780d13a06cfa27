// TerminationSignals: SIGINT and SIGTERM taken as requests to stop cleanly.
//
// Constructed before any thread starts, it blocks both signals in this thread
// and so in every thread started later; Wait then takes them synchronously.
// A command that runs a clone can thus commit and exit 0 instead of dying.
#pragma once

#include <signal.h>

#include <chrono>

namespace blkclone::cli {

class TerminationSignals {
 public:
  TerminationSignals();
  // Waits up to `timeout`; returns SIGINT or SIGTERM if one arrived, else 0.
  int Wait(std::chrono::milliseconds timeout);

 private:
  sigset_t set_;
};

}  // namespace blkclone::cli

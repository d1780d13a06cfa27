// Progress: what a long command shows while it works. On a terminal a bar
// redrawn in place (percentage, bytes, rate, ETA); otherwise a plain line per
// second, which logs and scripts can read.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace blkclone::cli {

class Progress {
 public:
  // `label` starts every line ("hydrating vm1").
  explicit Progress(std::string label);

  // Shows the state if the last update is old enough (5 per second on a
  // terminal, 1 per second otherwise); `rate` in bytes/s; `breakdown` follows
  // the byte counts ("  (data ... holes ...)").
  void Update(uint64_t done, uint64_t total, double rate, std::optional<double> eta,
              const std::string& breakdown = "");
  // On a terminal, draws the final state and ends the bar's line, so that what
  // follows starts on a line of its own.
  void Finish(uint64_t done, uint64_t total, const std::string& breakdown = "");

 private:
  using Clock = std::chrono::steady_clock;
  void Draw(uint64_t done, uint64_t total, const std::string& details);

  const std::string label_;
  const bool terminal_;
  Clock::time_point last_{};
  bool drawn_ = false;
};

}  // namespace blkclone::cli

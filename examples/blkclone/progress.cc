// Progress bar and progress lines on stdout.
#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "blkclone/control.hpp"

namespace blkclone::cli {
namespace {

constexpr int kBarWidth = 24;

}  // namespace

Progress::Progress(std::string label)
    : label_(std::move(label)), terminal_(::isatty(STDOUT_FILENO) == 1) {}

void Progress::Update(uint64_t done, uint64_t total, double rate, std::optional<double> eta,
                      const std::string& breakdown) {
  const auto now = Clock::now();
  const auto interval = terminal_ ? std::chrono::milliseconds(200) : std::chrono::seconds(1);
  if (drawn_ && now - last_ < interval) return;
  last_ = now;
  Draw(done, total,
       absl::StrCat(breakdown, "  ", HumanBytes(static_cast<uint64_t>(rate)), "/s",
                    eta ? absl::StrCat("  ETA ", HumanDuration(*eta)) : ""));
}

void Progress::Finish(uint64_t done, uint64_t total, const std::string& breakdown) {
  if (!terminal_) return;
  Draw(done, total, breakdown);
  std::printf("\n");
  std::fflush(stdout);
}

void Progress::Draw(uint64_t done, uint64_t total, const std::string& details) {
  drawn_ = true;
  const std::string numbers = absl::StrCat(HumanPercent(done, total), "  ", HumanBytes(done),
                                           " of ", HumanBytes(total), details);
  if (!terminal_) {
    std::printf("%s: %s\n", label_.c_str(), numbers.c_str());
  } else {
    const int filled =
        total == 0
            ? kBarWidth
            : static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * kBarWidth);
    // Trailing spaces erase what a longer previous line left.
    std::printf("\r%s [%s%s] %s      ", label_.c_str(), std::string(filled, '#').c_str(),
                std::string(kBarWidth - filled, '.').c_str(), numbers.c_str());
  }
  std::fflush(stdout);
}

}  // namespace blkclone::cli

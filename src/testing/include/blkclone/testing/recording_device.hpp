// RecordingDevice: logs every change made to another device, like dm-log-writes,
// and rebuilds the images a crash could leave behind, like CrashMonkey.
//
// The log holds, in completion order, each successful write (with a copy of its
// data), discard, write-zeroes and flush; a request with kPreflush logs a flush
// entry right before its own. Failed requests are left out: the code under test
// was told they did not happen.
//
// What a crash after the first n entries leaves on disk: every FUA entry, every
// entry a completed flush covers, and any subset of the others. A flush covers
// exactly the entries that completed before the flush was *submitted* (the
// contract promises nothing about writes completing while it runs), so each
// entry carries ticks of one clock that orders all submissions and completions.
// Overlapping entries apply in completion order.
//
//   blkclone::RecordingDevice recorder(*memory_device);
//   RunWorkload(recorder);
//   blkclone::WriteLog log = recorder.Log();
//   for (size_t n = 0; n <= log.size(); ++n) {
//     blkclone::CrashState state = blkclone::CrashStateAfter(log, n);
//     std::vector<bool> survivors(state.undetermined.size(), false);  // or any subset
//     CheckRecovers(blkclone::CrashImage(initial_image, log, n, survivors));
//   }
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/testing/device_wrapper.hpp"

namespace blkclone {

struct LogEntry {
  uint64_t index = 0;  // position in the log
  Op op = Op::kWrite;  // kWrite, kDiscard, kWriteZeroes or kFlush
  uint64_t offset = 0;
  uint64_t length = 0;
  bool fua = false;
  std::vector<std::byte> data = {};  // kWrite: what was written
  // Ticks of the recorder's clock. For a kPreflush flush entry, submitted_at is
  // that of the request carrying the flag.
  uint64_t submitted_at = 0;
  uint64_t completed_at = 0;
};

using WriteLog = std::vector<LogEntry>;

// `initial_image` with the first `entries` entries of `log` applied; discard and
// write-zeroes apply zeroes. The image has the size of the recorded device.
std::vector<std::byte> ReplayUpTo(const std::vector<std::byte>& initial_image, const WriteLog& log,
                                  size_t entries);

// The data entries among the first `entries` of a log (indexes, in log order),
// after a crash that followed them.
struct CrashState {
  std::vector<size_t> durable;       // FUA, or covered by a completed flush
  std::vector<size_t> undetermined;  // each may or may not have reached the media
};
CrashState CrashStateAfter(const WriteLog& log, size_t entries);

// The image a crash after the first `entries` entries leaves when, of
// CrashStateAfter(log, entries).undetermined, those with `survivors[k]` set landed.
std::vector<std::byte> CrashImage(const std::vector<std::byte>& initial_image, const WriteLog& log,
                                  size_t entries, const std::vector<bool>& survivors);

// The clock that stamps log entries. Recorders of several devices share one
// so that a crash can be placed at one instant across all of them.
class RecordingClock {
 public:
  uint64_t Tick() { return ticks_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t Now() const { return ticks_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> ticks_{0};
};

namespace internal {

// The part of RecordingDevice that does not depend on the inner device.
class WriteRecorder {
 public:
  explicit WriteRecorder(RecordingClock* clock) : clock_(clock != nullptr ? clock : &own_clock_) {}
  // Returns the submission tick of a request being submitted.
  uint64_t Submitted();
  // Logs `request`, submitted at tick `submitted_at`, which the inner device has
  // just completed successfully; call before completing it.
  void Completed(const Request& request, uint64_t submitted_at);
  WriteLog Log() const;

 private:
  LogEntry& Append(Op op, uint64_t submitted_at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RecordingClock own_clock_;
  RecordingClock* const clock_;
  mutable Mutex mu_;
  WriteLog log_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

template <BlockDevice Inner>
class RecordingDevice {
 public:
  // Stamps entries with `clock` if given (shared with other recorders), else its own.
  explicit RecordingDevice(Inner& inner, RecordingClock* clock = nullptr)
      : inner_(inner), recorder_(clock) {}

  const DeviceInfo& info() const { return inner_.info(); }
  void Submit(Request& request) noexcept {
    const uint64_t submitted_at = recorder_.Submitted();
    internal::ForwardCopy(inner_, request, [this, submitted_at](Request& r, absl::Status status) {
      if (status.ok()) recorder_.Completed(r, submitted_at);
      r.Complete(std::move(status));
    });
  }

  // A copy of the log so far.
  WriteLog Log() const { return recorder_.Log(); }

 private:
  Inner& inner_;
  internal::WriteRecorder recorder_;
};

static_assert(BlockDevice<RecordingDevice<AnyBlockDevice>>);

}  // namespace blkclone

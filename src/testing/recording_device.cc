// RecordingDevice's log, and the images rebuilt from it.
#include "blkclone/testing/recording_device.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace blkclone {
namespace {

void Apply(const LogEntry& entry, std::vector<std::byte>& image) {
  assert(entry.offset <= image.size() && entry.length <= image.size() - entry.offset);
  switch (entry.op) {
    case Op::kWrite:
      std::memcpy(image.data() + entry.offset, entry.data.data(), entry.length);
      break;
    case Op::kDiscard:
    case Op::kWriteZeroes:
      std::memset(image.data() + entry.offset, 0, entry.length);
      break;
    case Op::kRead:
    case Op::kFlush:
    case Op::kBlockStatus:
      break;
  }
}

}  // namespace

std::vector<std::byte> ReplayUpTo(const std::vector<std::byte>& initial_image, const WriteLog& log,
                                  size_t entries) {
  assert(entries <= log.size());
  std::vector<std::byte> image = initial_image;
  for (size_t i = 0; i < entries; ++i) Apply(log[i], image);
  return image;
}

CrashState CrashStateAfter(const WriteLog& log, size_t entries) {
  assert(entries <= log.size());
  // Flushes may complete out of submission order: the latest submitted one decides.
  uint64_t covered_before = 0;
  for (size_t i = 0; i < entries; ++i) {
    if (log[i].op == Op::kFlush) covered_before = std::max(covered_before, log[i].submitted_at);
  }
  CrashState state;
  for (size_t i = 0; i < entries; ++i) {
    const LogEntry& entry = log[i];
    if (entry.op == Op::kFlush) continue;
    if (entry.fua || entry.completed_at < covered_before) {
      state.durable.push_back(i);
    } else {
      state.undetermined.push_back(i);
    }
  }
  return state;
}

std::vector<std::byte> CrashImage(const std::vector<std::byte>& initial_image, const WriteLog& log,
                                  size_t entries, const std::vector<bool>& survivors) {
  const CrashState state = CrashStateAfter(log, entries);
  assert(survivors.size() == state.undetermined.size());
  std::vector<bool> landed(entries, false);
  for (size_t i : state.durable) landed[i] = true;
  for (size_t k = 0; k < state.undetermined.size(); ++k) {
    if (survivors[k]) landed[state.undetermined[k]] = true;
  }
  std::vector<std::byte> image = initial_image;
  for (size_t i = 0; i < entries; ++i) {
    if (landed[i]) Apply(log[i], image);
  }
  return image;
}

namespace internal {

uint64_t WriteRecorder::Submitted() {
  MutexLock lock(mu_);
  return clock_->Tick();
}

void WriteRecorder::Completed(const Request& request, uint64_t submitted_at) {
  if (request.op != Op::kFlush && !ModifiesData(request.op)) return;
  // Copied before taking the lock: writes can be large.
  std::vector<std::byte> data;
  if (request.op == Op::kWrite) data.assign(request.data, request.data + request.length);
  MutexLock lock(mu_);
  if (request.op == Op::kFlush || (request.flags & kPreflush)) Append(Op::kFlush, submitted_at);
  if (request.op == Op::kFlush) return;
  LogEntry& entry = Append(request.op, submitted_at);
  entry.offset = request.offset;
  entry.length = request.length;
  entry.fua = (request.flags & kFua) != 0;
  entry.data = std::move(data);
}

LogEntry& WriteRecorder::Append(Op op, uint64_t submitted_at) {
  LogEntry& entry = log_.emplace_back();
  entry.index = log_.size() - 1;
  entry.op = op;
  entry.submitted_at = submitted_at;
  entry.completed_at = clock_->Tick();
  return entry;
}

WriteLog WriteRecorder::Log() const {
  MutexLock lock(mu_);
  return log_;
}

}  // namespace internal
}  // namespace blkclone

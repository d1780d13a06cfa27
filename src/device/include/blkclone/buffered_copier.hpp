// BufferedCopier: the generic Copier for any pair of BlockDevices. It cuts
// jobs into chunks; each of a fixed set of buffers reads a chunk, writes it,
// and takes the next. At most `max_in_flight` chunks are in flight at once, of
// one job or several: a long job's chunks run side by side, so a slow remote
// source is read with many requests at a time. Jobs start in FIFO order.
// Nothing is allocated after construction. A chunk read as all zeroes is not
// written but zeroed thinly on the destination (detect_zeroes, where it can).
//
//   blkclone::BufferedCopier<FileDevice, FileDevice> copier(source, dest,
//                                                            {.chunk_size = 1 << 20});
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <vector>

#include "blkclone/aligned_buffer.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/copier.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/zeroes.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone {

struct BufferedCopierOptions {
  uint64_t chunk_size = 1 << 20;  // bytes read and written per step
  int max_in_flight = 8;          // chunks (and buffers) in flight at once
  // Chunks read as all zeroes are zeroed on the destination (a punched hole
  // or write-zeroes, ThinZeroingOp) instead of written, keeping it thin.
  bool detect_zeroes = true;
};

template <BlockDevice Source, BlockDevice Dest>
class BufferedCopier {
 public:
  BufferedCopier(Source& source, Dest& dest, BufferedCopierOptions options = {})
      : source_(source),
        dest_(dest),
        zeroing_op_(options.detect_zeroes ? ThinZeroingOp(dest.info().caps) : std::nullopt) {
    const uint32_t alignment = std::max<uint32_t>(
        {4096, source.info().memory_alignment, dest.info().memory_alignment});
    chunk_size_ = std::max<uint64_t>(options.chunk_size, alignment);
    for (uint64_t limit : {source.info().max_transfer, dest.info().max_transfer}) {
      if (limit != 0) chunk_size_ = std::min(chunk_size_, limit);
    }
    const int slots = std::max(1, options.max_in_flight);
    slots_.reserve(slots);
    jobs_.resize(slots);  // a job in progress holds at least one slot
    for (int i = 0; i < slots; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->owner = this;
      slot->buffer = AlignedBuffer(chunk_size_, alignment);
      free_slots_.push_back(slot.get());
      slots_.push_back(std::move(slot));
      free_jobs_.push_back(&jobs_[i]);
    }
  }

  // Waits for every job started or queued (rule 4).
  ~BufferedCopier() {
    internal::MutexLock lock(mu_);
    idle_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.empty() && current_ == nullptr && free_slots_.size() == slots_.size();
    });
  }

  BufferedCopier(const BufferedCopier&) = delete;
  BufferedCopier& operator=(const BufferedCopier&) = delete;

  // Chunks read as all zeroes and zeroed rather than written, so far.
  uint64_t zeroed_chunks() const { return zeroed_chunks_.load(std::memory_order_relaxed); }

  void Copy(CopyJob& job) noexcept {
    if (job.length == 0) return job.Complete(absl::OkStatus());
    Slot* assigned;
    {
      internal::MutexLock lock(mu_);
      queue_.push_back(job);
      assigned = AssignFreeSlotsLocked();
    }
    while (assigned != nullptr) {
      Slot* next = assigned->next_assigned;
      Run(*assigned);
      assigned = next;
    }
  }

 private:
  // A job whose chunks are being copied.
  struct JobState {
    CopyJob* job = nullptr;
    uint64_t next = 0;         // bytes of the job handed to slots so far
    uint32_t outstanding = 0;  // its chunks in flight
    absl::Status status;       // the first error
  };
  struct Slot {
    BufferedCopier* owner;
    AlignedBuffer buffer;
    JobState* state = nullptr;
    uint64_t offset = 0;  // the chunk, on both devices
    uint64_t length = 0;
    Request request;
    absl::Status status;
    // 2 while a submission is under way: the submitter and the completion each
    // drop one, and whoever drops the last continues, so inline completions loop
    // instead of recursing.
    std::atomic<int> holders{0};
    Slot* next_assigned = nullptr;  // chains the slots Copy starts
  };
  using JobQueue = boost::intrusive::list<
      CopyJob, boost::intrusive::member_hook<CopyJob, decltype(CopyJob::hook), &CopyJob::hook>>;

  // Gives free slots the next chunks (of the job being cut, then of queued
  // jobs); returns them chained, to be run once the lock is released.
  Slot* AssignFreeSlotsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Slot* assigned = nullptr;
    while (!free_slots_.empty() && AssignChunkLocked(*free_slots_.back())) {
      Slot* slot = free_slots_.back();
      free_slots_.pop_back();
      slot->next_assigned = assigned;
      assigned = slot;
    }
    return assigned;
  }

  // Gives `slot` the next chunk to copy; false when there is none.
  bool AssignChunkLocked(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (current_ == nullptr) {
      if (queue_.empty()) return false;
      current_ = free_jobs_.back();
      free_jobs_.pop_back();
      *current_ = JobState();
      current_->job = &queue_.front();
      queue_.pop_front();
    }
    JobState& state = *current_;
    slot.state = &state;
    slot.offset = state.job->offset + state.next;
    slot.length = std::min(chunk_size_, state.job->length - state.next);
    state.next += slot.length;
    ++state.outstanding;
    if (state.next == state.job->length) current_ = nullptr;
    return true;
  }

  // Copies the slot's chunk, and the next ones it is given, until a request
  // goes on elsewhere or nothing is left for the slot.
  void Run(Slot& slot) {
    do {
      if (!Step(slot, /*is_read=*/true)) return;
      if (slot.status.ok() && !Step(slot, /*is_read=*/false)) return;
    } while (FinishChunk(slot));
  }

  // Submits the chunk's read, or its write (or zeroing); true if it has
  // completed by the time Submit returned.
  bool Step(Slot& slot, bool is_read) {
    std::span<std::byte> buffer(slot.buffer.data(), slot.length);
    slot.request = is_read ? Request::Read(slot.offset, buffer) : WriteOf(slot.offset, buffer);
    slot.holders.store(2, std::memory_order_relaxed);
    slot.request.context = &slot;
    slot.request.on_complete = &OnComplete;
    if (is_read) {
      source_.Submit(slot.request);
    } else {
      dest_.Submit(slot.request);
    }
    return slot.holders.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }

  // What puts a chunk just read onto the destination: its write, or the
  // zeroing of its range when it is all zeroes.
  Request WriteOf(uint64_t offset, std::span<std::byte> chunk) {
    if (!zeroing_op_ || !IsAllZeroes(chunk)) return Request::Write(offset, chunk);
    zeroed_chunks_.fetch_add(1, std::memory_order_relaxed);
    return Request::Make(*zeroing_op_, kNoFlags, offset, chunk.size(), nullptr);
  }

  static void OnComplete(Request& request, absl::Status status) {
    Slot& slot = *static_cast<Slot*>(request.context);
    slot.status = std::move(status);
    if (slot.holders.fetch_sub(1, std::memory_order_acq_rel) != 1) return;  // submitter goes on
    BufferedCopier& self = *slot.owner;
    // Resume where the submitter left off: the write after a read, then more.
    const bool was_read = slot.request.op == Op::kRead;
    if (slot.status.ok() && was_read && !self.Step(slot, /*is_read=*/false)) return;
    if (self.FinishChunk(slot)) self.Run(slot);
  }

  // The slot's chunk is done: completes its job when that was the job's last
  // chunk (a failed chunk ends the job: the chunks not started are dropped),
  // then gives the slot its next chunk, or frees it and returns false.
  bool FinishChunk(Slot& slot) {
    JobState& state = *slot.state;
    CopyJob* finished = nullptr;
    absl::Status result;
    {
      internal::MutexLock lock(mu_);
      if (!slot.status.ok() && state.status.ok()) {
        state.status = slot.status;
        state.next = state.job->length;
        if (current_ == &state) current_ = nullptr;
      }
      if (--state.outstanding == 0 && state.next == state.job->length) {
        finished = state.job;
        result = std::move(state.status);
        free_jobs_.push_back(&state);
      }
    }
    // Before the slot is free, so that the destructor waits for it.
    if (finished != nullptr) finished->Complete(std::move(result));
    internal::MutexLock lock(mu_);
    if (AssignChunkLocked(slot)) return true;
    free_slots_.push_back(&slot);
    idle_cv_.SignalAll();
    return false;
  }

  Source& source_;
  Dest& dest_;
  const std::optional<Op> zeroing_op_;
  std::atomic<uint64_t> zeroed_chunks_{0};
  uint64_t chunk_size_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<JobState> jobs_;
  internal::Mutex mu_;
  internal::CondVar idle_cv_;
  std::vector<Slot*> free_slots_ ABSL_GUARDED_BY(mu_);
  std::vector<JobState*> free_jobs_ ABSL_GUARDED_BY(mu_);
  JobState* current_ ABSL_GUARDED_BY(mu_) = nullptr;  // the job being cut into chunks
  JobQueue queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

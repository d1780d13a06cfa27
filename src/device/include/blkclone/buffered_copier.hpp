// BufferedCopier: the generic Copier for any pair of BlockDevices. It reads a
// chunk into one of a fixed set of buffers, writes it, and moves on; at most
// `max_in_flight` jobs run at once and the rest wait in FIFO order. Nothing is
// allocated after construction. A chunk read as all zeroes is not written but
// zeroed thinly on the destination (detect_zeroes, where it can).
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
  int max_in_flight = 8;          // jobs running at once
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
    slots_.reserve(std::max(1, options.max_in_flight));
    for (int i = 0; i < std::max(1, options.max_in_flight); ++i) {
      auto slot = std::make_unique<Slot>();
      slot->owner = this;
      slot->buffer = AlignedBuffer(chunk_size_, alignment);
      free_slots_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
  }

  // Waits for every job started or queued (rule 4).
  ~BufferedCopier() {
    internal::MutexLock lock(mu_);
    idle_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.empty() && free_slots_.size() == slots_.size();
    });
  }

  BufferedCopier(const BufferedCopier&) = delete;
  BufferedCopier& operator=(const BufferedCopier&) = delete;

  // Chunks read as all zeroes and zeroed rather than written, so far.
  uint64_t zeroed_chunks() const { return zeroed_chunks_.load(std::memory_order_relaxed); }

  void Copy(CopyJob& job) noexcept {
    Slot* slot;
    {
      internal::MutexLock lock(mu_);
      if (free_slots_.empty()) {
        queue_.push_back(job);
        return;
      }
      slot = free_slots_.back();
      free_slots_.pop_back();
    }
    Run(*slot, job);
  }

 private:
  struct Slot {
    BufferedCopier* owner;
    AlignedBuffer buffer;
    CopyJob* job = nullptr;
    uint64_t done = 0;  // bytes of the job copied so far
    Request request;
    absl::Status status;
    // 2 while a submission is under way: the submitter and the completion each
    // drop one, and whoever drops the last continues, so inline completions loop
    // instead of recursing.
    std::atomic<int> holders{0};
  };
  using JobQueue = boost::intrusive::list<
      CopyJob, boost::intrusive::member_hook<CopyJob, decltype(CopyJob::hook), &CopyJob::hook>>;

  // Drives `job` on `slot` to the end, then takes queued jobs.
  void Run(Slot& slot, CopyJob& first_job) {
    CopyJob* job = &first_job;
    while (job != nullptr) {
      slot.job = job;
      slot.done = 0;
      std::optional<absl::Status> status = CopyChunks(slot);
      if (!status) return;  // continued elsewhere
      job = Finish(slot, *std::move(status));
    }
  }

  // Copies chunk after chunk; returns the job's final status, or nothing when a
  // completion will go on from another thread.
  std::optional<absl::Status> CopyChunks(Slot& slot) {
    while (slot.done < slot.job->length) {
      const uint64_t length = std::min(chunk_size_, slot.job->length - slot.done);
      const uint64_t offset = slot.job->offset + slot.done;
      std::span<std::byte> buffer(slot.buffer.data(), length);
      for (bool is_read : {true, false}) {
        slot.request = is_read ? Request::Read(offset, buffer) : WriteOf(offset, buffer);
        if (!Submit(slot, is_read)) return std::nullopt;
        if (!slot.status.ok()) return slot.status;
      }
      slot.done += length;
    }
    return absl::OkStatus();
  }

  // What puts a chunk just read onto the destination: its write, or the
  // zeroing of its range when it is all zeroes.
  Request WriteOf(uint64_t offset, std::span<std::byte> chunk) {
    if (!zeroing_op_ || !IsAllZeroes(chunk)) return Request::Write(offset, chunk);
    zeroed_chunks_.fetch_add(1, std::memory_order_relaxed);
    return Request::Make(*zeroing_op_, kNoFlags, offset, chunk.size(), nullptr);
  }

  // Returns true if the request has completed by the time Submit returned.
  bool Submit(Slot& slot, bool is_read) {
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

  static void OnComplete(Request& request, absl::Status status) {
    Slot& slot = *static_cast<Slot*>(request.context);
    slot.status = std::move(status);
    if (slot.holders.fetch_sub(1, std::memory_order_acq_rel) != 1) return;  // submitter goes on
    BufferedCopier& self = *slot.owner;
    // Resume where the submitter left off: finish this step, then the rest.
    const bool was_read = slot.request.op == Op::kRead;
    std::optional<absl::Status> result = slot.status;
    if (result->ok() && was_read) {
      slot.request = self.WriteOf(slot.request.offset, {slot.request.data, slot.request.length});
      if (!self.Submit(slot, false)) return;
      result = slot.status;
    }
    if (result->ok()) {
      slot.done += slot.request.length;
      result = self.CopyChunks(slot);
      if (!result) return;  // continued elsewhere
    }
    CopyJob* next = self.Finish(slot, *std::move(result));
    if (next != nullptr) self.Run(slot, *next);
  }

  // Completes the slot's job; returns the next queued job for the slot, or
  // frees the slot and returns nullptr.
  CopyJob* Finish(Slot& slot, absl::Status status) {
    CopyJob* job = slot.job;
    slot.job = nullptr;
    job->Complete(std::move(status));
    internal::MutexLock lock(mu_);
    if (!queue_.empty()) {
      CopyJob* next = &queue_.front();
      queue_.pop_front();
      return next;
    }
    free_slots_.push_back(&slot);
    idle_cv_.SignalAll();
    return nullptr;
  }

  Source& source_;
  Dest& dest_;
  const std::optional<Op> zeroing_op_;
  std::atomic<uint64_t> zeroed_chunks_{0};
  uint64_t chunk_size_;
  std::vector<std::unique_ptr<Slot>> slots_;
  internal::Mutex mu_;
  internal::CondVar idle_cv_;
  std::vector<Slot*> free_slots_ ABSL_GUARDED_BY(mu_);
  JobQueue queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

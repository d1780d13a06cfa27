// UringCopier: chunks of copy jobs as linked read -> write pairs on one ring;
// with zero detection, the read first, then a write or, for all zeroes, a
// fallocate that zeroes the destination range thinly.
#include "blkclone/uring_copier.hpp"

#include <linux/falloc.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/internal/uring_loop.hpp"
#include "blkclone/status.hpp"
#include "blkclone/zeroes.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone {
namespace {

constexpr int kSource = 0, kDest = 1;  // fixed-file indexes
constexpr std::array<int, 5> kCopyOps = {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_READ_FIXED,
                                         IORING_OP_WRITE_FIXED, IORING_OP_FALLOCATE};

bool IsTransient(int32_t result) { return result == -EAGAIN || result == -EINTR; }

uint32_t DirectOffsetAlignment(const UringDevice& device) {
  std::optional<DirectIoAlignment> alignment = device.direct_alignment();
  return alignment.has_value() ? alignment->offset : 1;
}

uint32_t DirectMemoryAlignment(const UringDevice& device) {
  std::optional<DirectIoAlignment> alignment = device.direct_alignment();
  return alignment.has_value() ? alignment->memory : 1;
}

// The fallocate mode that zeroes a range of `dest` thinly; 0: none to use.
int ZeroingMode(const UringDevice& dest, bool detect_zeroes) {
  if (!detect_zeroes) return 0;
  std::optional<Op> op = ThinZeroingOp(dest.info().caps);
  if (!op) return 0;
  return (*op == Op::kDiscard ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
}

}  // namespace

// The ring and its thread. A chunk holds one buffer while its SQEs are in
// flight; a job being split, and each job with chunks in flight, holds a
// JobState. All of it belongs to the loop thread; posted_ to mu_.
class UringCopier::Engine final : public internal::UringLoop {
 public:
  // `zeroing_mode`: the fallocate mode for chunks read as all zeroes; 0
  // writes them like any other.
  Engine(internal::Ring ring, AlignedBuffer buffers, uint64_t chunk_size, int chunks,
         bool fixed_buffers, int zeroing_mode)
      : UringLoop(std::move(ring)),
        buffers_(std::move(buffers)),
        chunk_size_(chunk_size),
        fixed_buffers_(fixed_buffers),
        zeroing_mode_(zeroing_mode),
        chunks_(chunks),
        jobs_(chunks) {
    for (int i = 0; i < chunks; ++i) {
      chunks_[i].buffer = buffers_.data() + i * chunk_size;
      chunks_[i].index = i;
      free_chunks_.push_back(&chunks_[i]);
      free_jobs_.push_back(&jobs_[i]);
    }
    Start();
  }
  ~Engine() override { Stop(); }

  // Queues `job`; false once the ring has stopped.
  bool Post(CopyJob& job) {
    bool wake;
    {
      internal::MutexLock lock(mu_);
      if (exited()) return false;
      posted_.push_back(job);
      wake = TakeWakeUp();
    }
    if (wake) Wake();
    return true;
  }

  bool fixed_buffers() const { return fixed_buffers_; }
  uint64_t chunks_started() const { return started_.load(std::memory_order_relaxed); }
  uint64_t max_in_flight() const { return max_in_flight_.load(std::memory_order_relaxed); }
  uint64_t short_transfers() const { return short_transfers_.load(std::memory_order_relaxed); }
  uint64_t retries() const { return retries_.load(std::memory_order_relaxed); }
  uint64_t zeroed_chunks() const { return zeroed_chunks_.load(std::memory_order_relaxed); }

 private:
  enum Role : uint64_t { kRead = 1, kWrite = 2, kRoleMask = 7 };

  struct JobState {
    CopyJob* job = nullptr;
    uint64_t next = 0;    // bytes of the job handed to chunks so far
    int outstanding = 0;  // its chunks in flight
    absl::Status status;  // the first error
  };

  struct alignas(8) Chunk {
    std::byte* buffer = nullptr;
    int index = 0;  // of the registered buffer
    JobState* job = nullptr;
    uint64_t offset = 0;  // on both devices
    uint32_t length = 0;
    uint32_t read_done = 0, write_done = 0;
    uint32_t read_asked = 0, write_asked = 0;
    int pending = 0;  // CQEs still to come
    bool chained_read = false;
    bool write_queued = false;  // the write (or zeroing) is on the ring
    bool zeroes = false;        // read as all zeroes: zeroed, not written
    int32_t read_result = 0, write_result = 0;
  };

  using JobQueue = boost::intrusive::list<
      CopyJob, boost::intrusive::member_hook<CopyJob, decltype(CopyJob::hook), &CopyJob::hook>>;

  void TakePosted() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    backlog_.splice(backlog_.end(), posted_);
  }
  bool HasPosted() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !posted_.empty(); }
  bool Busy() const override {
    return !backlog_.empty() || current_ != nullptr || free_chunks_.size() != chunks_.size();
  }

  // Gives every free buffer a chunk of the job at the head of the queue.
  void StartWork() override {
    while (!free_chunks_.empty()) {
      if (current_ == nullptr) {
        if (backlog_.empty()) return;
        current_ = free_jobs_.back();  // never empty: each JobState holds a chunk
        free_jobs_.pop_back();
        *current_ = JobState();
        current_->job = &backlog_.front();
        backlog_.pop_front();
      }
      Chunk& chunk = *free_chunks_.back();
      free_chunks_.pop_back();
      const CopyJob& job = *current_->job;
      chunk.job = current_;
      chunk.offset = job.offset + current_->next;
      chunk.length = static_cast<uint32_t>(std::min(chunk_size_, job.length - current_->next));
      chunk.read_done = chunk.write_done = 0;
      chunk.zeroes = false;
      current_->next += chunk.length;
      ++current_->outstanding;
      if (current_->next == job.length) current_ = nullptr;
      started_.fetch_add(1, std::memory_order_relaxed);
      const uint64_t in_flight = chunks_.size() - free_chunks_.size();
      if (in_flight > max_in_flight_.load(std::memory_order_relaxed))
        max_in_flight_.store(in_flight, std::memory_order_relaxed);
      Launch(chunk);
    }
  }

  void OnCompletion(uint64_t user_data, int32_t result) override {
    Chunk& chunk = *reinterpret_cast<Chunk*>(user_data & ~uint64_t{kRoleMask});
    ((user_data & kRoleMask) == kRead ? chunk.read_result : chunk.write_result) = result;
    if (--chunk.pending == 0) Settle(chunk);
  }

  void Tag(io_uring_sqe* sqe, Chunk& chunk, Role role, unsigned flags) {
    io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | flags);
    io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(&chunk) | role);
    ++chunk.pending;
  }

  // Queues what remains of the chunk: the rest of the read linked to the
  // write of the whole buffer (with zero detection: the read alone), or, once
  // the read is complete, the rest of the write or the zeroing. A short read
  // breaks the link and cancels the write.
  void Launch(Chunk& chunk) {
    chunk.pending = 0;
    chunk.chained_read = chunk.read_done < chunk.length;
    chunk.write_queued = !chunk.chained_read || zeroing_mode_ == 0;
    ReserveSqes(chunk.chained_read + chunk.write_queued);
    if (chunk.chained_read) {
      chunk.read_asked = chunk.length - chunk.read_done;
      std::byte* at = chunk.buffer + chunk.read_done;
      io_uring_sqe* sqe = NextSqe();
      if (fixed_buffers_) {
        io_uring_prep_read_fixed(sqe, kSource, at, chunk.read_asked, chunk.offset + chunk.read_done,
                                 chunk.index);
      } else {
        io_uring_prep_read(sqe, kSource, at, chunk.read_asked, chunk.offset + chunk.read_done);
      }
      Tag(sqe, chunk, kRead, chunk.write_queued ? IOSQE_IO_LINK : 0);
    }
    if (!chunk.write_queued) return;
    chunk.write_asked = chunk.length - chunk.write_done;
    std::byte* at = chunk.buffer + chunk.write_done;
    io_uring_sqe* sqe = NextSqe();
    if (chunk.zeroes) {
      io_uring_prep_fallocate(sqe, kDest, zeroing_mode_,
                              static_cast<off_t>(chunk.offset + chunk.write_done),
                              static_cast<off_t>(chunk.write_asked));
    } else if (fixed_buffers_) {
      io_uring_prep_write_fixed(sqe, kDest, at, chunk.write_asked, chunk.offset + chunk.write_done,
                                chunk.index);
    } else {
      io_uring_prep_write(sqe, kDest, at, chunk.write_asked, chunk.offset + chunk.write_done);
    }
    Tag(sqe, chunk, kWrite, 0);
  }

  void Settle(Chunk& chunk) {
    if (chunk.chained_read) {
      const int32_t result = chunk.read_result;
      const uint64_t at = chunk.offset + chunk.read_done;
      if (IsTransient(result)) return Retry(chunk);
      if (result < 0)
        return ChunkDone(chunk, ErrnoStatus(-result, "copy: read source", at, chunk.read_asked));
      if (result == 0)
        return ChunkDone(chunk,
                         absl::OutOfRangeError(absl::StrCat("copy: the source ended at offset ", at,
                                                            " (size changed while open?)")));
      if (static_cast<uint32_t>(result) < chunk.read_asked) CountShort();
      chunk.read_done += static_cast<uint32_t>(result);
      // Whatever became of the write, it must run again after the full read.
      if (chunk.read_done < chunk.length) return Launch(chunk);
      if (!chunk.write_queued) {
        chunk.zeroes = IsAllZeroes({chunk.buffer, chunk.length});
        return Launch(chunk);
      }
    }
    const int32_t result = chunk.write_result;
    const uint64_t at = chunk.offset + chunk.write_done;
    if (IsTransient(result)) return Retry(chunk);
    if (chunk.zeroes && (result == -EOPNOTSUPP || result == -EINVAL)) {
      chunk.zeroes = false;  // the file system cannot: write the zeroes
      return Launch(chunk);
    }
    if (result < 0)
      return ChunkDone(chunk,
                       ErrnoStatus(-result, "copy: write destination", at, chunk.write_asked));
    if (chunk.zeroes) {
      zeroed_chunks_.fetch_add(1, std::memory_order_relaxed);
      return ChunkDone(chunk, absl::OkStatus());  // fallocate does all or nothing
    }
    if (result == 0)
      return ChunkDone(chunk, absl::InternalError(
                                  absl::StrCat("copy: write at offset ", at, " made no progress")));
    if (static_cast<uint32_t>(result) < chunk.write_asked) CountShort();
    chunk.write_done += static_cast<uint32_t>(result);
    if (chunk.write_done < chunk.length) return Launch(chunk);
    ChunkDone(chunk, absl::OkStatus());
  }

  void CountShort() { short_transfers_.fetch_add(1, std::memory_order_relaxed); }

  void Retry(Chunk& chunk) {
    retries_.fetch_add(1, std::memory_order_relaxed);
    Launch(chunk);
  }

  // Frees the chunk; completes its job when that was the job's last chunk. A
  // failed chunk stops the job from starting more.
  void ChunkDone(Chunk& chunk, absl::Status status) {
    JobState& state = *chunk.job;
    chunk.job = nullptr;
    free_chunks_.push_back(&chunk);
    if (!status.ok() && state.status.ok()) {
      state.status = std::move(status);
      state.next = state.job->length;
      if (current_ == &state) current_ = nullptr;
    }
    if (--state.outstanding > 0 || state.next < state.job->length) return;
    CopyJob& job = *state.job;
    absl::Status result = std::move(state.status);
    free_jobs_.push_back(&state);
    job.Complete(std::move(result));
  }

  AlignedBuffer buffers_;
  const uint64_t chunk_size_;
  const bool fixed_buffers_;
  const int zeroing_mode_;
  JobQueue posted_ ABSL_GUARDED_BY(mu_);
  JobQueue backlog_;
  std::vector<Chunk> chunks_;
  std::vector<Chunk*> free_chunks_;
  std::vector<JobState> jobs_;
  std::vector<JobState*> free_jobs_;
  JobState* current_ = nullptr;  // the job being cut into chunks
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> max_in_flight_{0};
  std::atomic<uint64_t> short_transfers_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> zeroed_chunks_{0};
};

absl::StatusOr<std::unique_ptr<UringCopier>> UringCopier::Create(
    UringDevice& source, UringDevice& dest, const UringCopierOptions& options) {
  if (options.chunk_size < 4096 || options.chunk_size > (64u << 20))
    return absl::InvalidArgumentError("UringCopier: chunk_size must be in 4 KiB..64 MiB");
  if (options.max_in_flight < 1)
    return absl::InvalidArgumentError("UringCopier: max_in_flight must be >= 1");
  if (dest.info().caps.read_only)
    return absl::FailedPreconditionError(
        absl::StrCat("UringCopier: the destination ", dest.path(), " is read-only"));
  const uint32_t alignment = std::max(DirectOffsetAlignment(source), DirectOffsetAlignment(dest));
  // Whole multiples of the alignment keep every chunk after the first aligned.
  const uint64_t chunk_size = (options.chunk_size + alignment - 1) / alignment * alignment;
  const size_t buffer_alignment =
      std::max<size_t>({4096, DirectMemoryAlignment(source), DirectMemoryAlignment(dest)});
  const int chunks = options.max_in_flight;
  BLKCLONE_ASSIGN_OR_RETURN(
      internal::Ring ring,
      internal::Ring::Create(2 * chunks, 4 * chunks, {source.fd(), dest.fd()}, kCopyOps,
                             absl::StrCat("copier ", source.path(), " -> ", dest.path())));
  AlignedBuffer buffers = AlignedBuffer::Zeroed(chunks * chunk_size, buffer_alignment);
  bool fixed = false;
  if (options.register_buffers) {
    std::vector<iovec> iovecs(chunks);
    for (int i = 0; i < chunks; ++i) iovecs[i] = {buffers.data() + i * chunk_size, chunk_size};
    fixed = io_uring_register_buffers(ring.get(), iovecs.data(), chunks) == 0;
  }
  std::unique_ptr<UringCopier> copier(new UringCopier(source, dest, alignment, options));
  copier->engine_ = std::make_unique<Engine>(std::move(ring), std::move(buffers), chunk_size,
                                             chunks, fixed, ZeroingMode(dest, options.detect_zeroes));
  return copier;
}

UringCopier::UringCopier(UringDevice& source, UringDevice& dest, uint32_t alignment,
                         const UringCopierOptions& options)
    : limit_(std::min(source.info().size, dest.info().size)),
      alignment_(alignment),
      fallback_(source, dest,
                {.chunk_size = options.chunk_size,
                 .max_in_flight = 2,
                 .detect_zeroes = options.detect_zeroes}) {}

UringCopier::~UringCopier() = default;

void UringCopier::Copy(CopyJob& job) noexcept {
  if (job.length == 0) return job.Complete(absl::OkStatus());
  if (job.offset > limit_ || job.length > limit_ - job.offset)
    return job.Complete(
        absl::OutOfRangeError(absl::StrCat("copy of ", job.length, " bytes at offset ", job.offset,
                                           " goes beyond ", limit_, " bytes")));
  if ((job.offset | job.length) % alignment_ != 0) {
    fallback_jobs_.fetch_add(1, std::memory_order_relaxed);
    return fallback_.Copy(job);
  }
  if (!engine_->Post(job))
    job.Complete(absl::FailedPreconditionError("copy: the copier is shutting down"));
}

UringCopier::Stats UringCopier::stats() const {
  return {.chunks = engine_->chunks_started(),
          .max_in_flight = engine_->max_in_flight(),
          .short_transfers = engine_->short_transfers(),
          .retries = engine_->retries(),
          .fallback_jobs = fallback_jobs_.load(std::memory_order_relaxed),
          .zeroed_chunks = engine_->zeroed_chunks(),
          .registered_buffers = engine_->fixed_buffers()};
}

}  // namespace blkclone

// RbdPipeline: requests into librbd, completions out on the pipeline's thread.
#include "rbd_pipeline.hpp"

#include "absl/strings/str_cat.h"
#include "blkclone/status.hpp"
#include "rbd_allocation.hpp"

namespace blkclone::internal {

RbdPipeline::RbdPipeline(rbd_image_t image, std::string name, bool cache, uint32_t block_size,
                         int max_in_flight)
    : image_(image),
      name_(std::move(name)),
      cache_(cache),
      block_size_(block_size),
      max_in_flight_(max_in_flight),
      completion_thread_([this] { RunCompletions(); }) {}

RbdPipeline::~RbdPipeline() {
  RequestList cancelled;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    cancelled.swap(waiting_);
    changed_.SignalAll();
  }
  while (!cancelled.empty()) {
    Request& request = cancelled.front();
    cancelled.pop_front();
    request.Complete(absl::CancelledError(absl::StrCat(name_, ": the device was closed")));
  }
  completion_thread_.join();
}

void RbdPipeline::Submit(Request& request) {
  bool closing;
  {
    MutexLock lock(mu_);
    closing = stopping_;
    if (!closing) {
      if (in_flight_ >= max_in_flight_) return waiting_.push_back(request);
      ++in_flight_;
    }
  }
  if (closing)
    return request.Complete(absl::CancelledError(absl::StrCat(name_, ": the device is closing")));
  Start(request);
}

void RbdPipeline::Start(Request& request) {
  Operation& operation = *operations_.Get();
  operation = Operation{.pipeline = this, .request = &request};
  // Without librbd's cache a completed write is durable: nothing to add.
  const bool cached_write = cache_ && request.op != Op::kFlush && request.op != Op::kRead;
  if (cached_write && (request.flags & kPreflush) != 0)
    operation.steps[operation.step_count++] = Step::kFlush;
  operation.steps[operation.step_count++] = request.op == Op::kFlush         ? Step::kFlush
                                            : request.op == Op::kBlockStatus ? Step::kDescribe
                                                                             : Step::kData;
  if (cached_write && (request.flags & kFua) != 0)
    operation.steps[operation.step_count++] = Step::kFlush;
  Advance(operation);
}

void RbdPipeline::Advance(Operation& operation) {
  if (operation.next_step == operation.step_count) return Finish(operation, absl::OkStatus());
  Issue(operation, operation.steps[operation.next_step++]);
}

void RbdPipeline::Issue(Operation& operation, Step step) {
  if (step == Step::kDescribe) return describer_.Push(operation);
  rbd_completion_t completion;
  int r = rbd_aio_create_completion(&operation, &RbdPipeline::OnLibrbdCompletion, &completion);
  if (r < 0) return Finish(operation, ErrnoStatus(-r, absl::StrCat(name_, ": aio completion")));
  const Request& request = *operation.request;
  char* data = reinterpret_cast<char*>(request.data);
  if (step == Step::kFlush) {
    r = rbd_aio_flush(image_, completion);
  } else {
    switch (request.op) {
      case Op::kRead:
        r = rbd_aio_read(image_, request.offset, request.length, data, completion);
        break;
      case Op::kWrite:
        r = rbd_aio_write(image_, request.offset, request.length, data, completion);
        break;
      case Op::kDiscard:
        r = rbd_aio_discard(image_, request.offset, request.length, completion);
        break;
      case Op::kWriteZeroes:
        r = rbd_aio_write_zeroes(image_, request.offset, request.length, completion, 0, 0);
        break;
      case Op::kFlush:
      case Op::kBlockStatus:
        r = -EINVAL;  // they have no data step
        break;
    }
  }
  if (r < 0) {
    rbd_aio_release(completion);
    Finish(operation, ErrnoStatus(-r, absl::StrCat(name_, ": ", OpName(request.op)),
                                  request.offset, request.length));
  }
}

void RbdPipeline::Describe(Operation& operation) {
  const Request& request = *operation.request;
  operation.result = DescribeImageAllocation(image_, request.offset, request.length, block_size_,
                                             *request.extents);
  HandOver(operation);
}

// On a librbd thread: only hands the operation over to the completion thread.
void RbdPipeline::OnLibrbdCompletion(rbd_completion_t completion, void* arg) {
  Operation& operation = *static_cast<Operation*>(arg);
  operation.result = rbd_aio_get_return_value(completion);
  rbd_aio_release(completion);
  operation.pipeline->HandOver(operation);
}

void RbdPipeline::HandOver(Operation& operation) {
  MutexLock lock(mu_);
  completed_.push_back(&operation);
  changed_.SignalAll();
}

void RbdPipeline::RunCompletions() {
  std::vector<Operation*> batch;
  while (true) {
    {
      MutexLock lock(mu_);
      changed_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !completed_.empty() || (stopping_ && in_flight_ == 0);
      });
      if (completed_.empty()) return;
      batch.swap(completed_);
    }
    for (Operation* operation : batch) {
      const Request& request = *operation->request;
      // A read has one step, whose result is the bytes read.
      const bool short_read = request.op == Op::kRead && operation->result >= 0 &&
                              static_cast<uint64_t>(operation->result) != request.length;
      if (operation->result < 0 || short_read) {
        const int error = operation->result < 0 ? static_cast<int>(-operation->result) : EIO;
        Finish(*operation, ErrnoStatus(error, absl::StrCat(name_, ": ", OpName(request.op)),
                                       request.offset, request.length));
      } else {
        Advance(*operation);
      }
    }
    batch.clear();
  }
}

void RbdPipeline::Finish(Operation& operation, absl::Status status) {
  Request& request = *operation.request;
  operations_.Put(&operation);
  request.Complete(std::move(status));
  Request* next = nullptr;
  {
    MutexLock lock(mu_);
    if (!stopping_ && !waiting_.empty()) {
      next = &waiting_.front();
      waiting_.pop_front();
    } else {
      --in_flight_;
      changed_.SignalAll();
    }
  }
  if (next != nullptr) Start(*next);
}

}  // namespace blkclone::internal

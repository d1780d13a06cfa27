// RbdPipeline: carries validated requests through librbd's asynchronous calls
// (see rbd_device.hpp for the mapping), at most max_in_flight at once, and
// completes them on its own thread. kBlockStatus, which librbd only answers
// synchronously, runs on a thread of its own.
#pragma once

#include <rbd/librbd.h>

#include <array>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/object_pool.hpp"
#include "blkclone/internal/worker_pool.hpp"
#include "blkclone/request.hpp"
#include "boost/intrusive/list.hpp"

namespace blkclone::internal {

class RbdPipeline {
 public:
  // `name` starts the messages of I/O errors; `cache` is librbd's rbd_cache;
  // `block_size` is the unit of kBlockStatus answers.
  RbdPipeline(rbd_image_t image, std::string name, bool cache, uint32_t block_size,
              int max_in_flight);
  // Waits for what is in librbd, fails what waits with kCancelled.
  ~RbdPipeline();
  RbdPipeline(const RbdPipeline&) = delete;
  RbdPipeline& operator=(const RbdPipeline&) = delete;

  // `request` has passed ValidateRequest.
  void Submit(Request& request);

 private:
  // kDescribe: rbd_diff_iterate2 on the describing thread.
  enum class Step : uint8_t { kFlush, kData, kDescribe };
  // One request on its way through its steps.
  struct Operation {
    RbdPipeline* pipeline = nullptr;
    Request* request = nullptr;
    std::array<Step, 3> steps{};
    int step_count = 0;
    int next_step = 0;
    ssize_t result = 0;  // of the librbd call last completed
    // In the describing thread's queue.
    boost::intrusive::list_member_hook<> hook{};
  };
  using RequestList = boost::intrusive::list<
      Request, boost::intrusive::member_hook<Request, RequestHook, &Request::hook>>;

  static void OnLibrbdCompletion(rbd_completion_t completion, void* arg);
  void Start(Request& request);
  // Issues the operation's next step, or finishes it when none is left.
  void Advance(Operation& operation);
  void Issue(Operation& operation, Step step);
  void Describe(Operation& operation);
  // Queues a finished step for the completion thread.
  void HandOver(Operation& operation);
  void Finish(Operation& operation, absl::Status status);
  void RunCompletions();

  const rbd_image_t image_;
  const std::string name_;
  const bool cache_;
  const uint32_t block_size_;
  const int max_in_flight_;
  ObjectPool<Operation> operations_;

  Mutex mu_;
  CondVar changed_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  RequestList waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<Operation*> completed_ ABSL_GUARDED_BY(mu_);
  // Destroyed before mu_: its thread may still be leaving HandOver.
  WorkerPool<Operation, &Operation::hook> describer_{1, [this](Operation& o) { Describe(o); }};
  std::thread completion_thread_;
};

}  // namespace blkclone::internal

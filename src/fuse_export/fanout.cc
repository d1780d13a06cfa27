// Join and SubmitAll.
#include "fanout.hpp"

#include <memory>
#include <utility>

namespace blkclone::internal {

void Join::Arrive(absl::Status status) {
  if (!status.ok()) {
    MutexLock lock(mu_);
    if (first_error_.ok()) first_error_ = std::move(status);
  }
  if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  std::unique_ptr<Join> self(this);
  absl::Status result;
  {
    MutexLock lock(mu_);
    result = std::move(first_error_);
  }
  std::move(done_)(std::move(result));
}

void SubmitAll(AnyBlockDevice& device, std::vector<Request> requests, Done done) {
  if (requests.empty()) return std::move(done)(absl::OkStatus());
  // Moving the vector into the join keeps its elements where they are.
  Request* const first = requests.data();
  const size_t count = requests.size();
  Join* join =
      Join::Create(count, [requests = std::move(requests), done = std::move(done)](
                              absl::Status status) mutable { std::move(done)(std::move(status)); });
  for (size_t i = 0; i < count; ++i) {
    first[i].context = join;
    first[i].on_complete = [](Request& request, absl::Status status) {
      static_cast<Join*>(request.context)->Arrive(std::move(status));
    };
  }
  // The last completion frees the requests, possibly inside this loop's last
  // Submit, so nothing is touched after it.
  for (size_t i = 0; i < count; ++i) device.Submit(first[i]);
}

}  // namespace blkclone::internal

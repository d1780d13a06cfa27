// ObjectPool: recycles objects so that the request path allocates only while
// the pool grows to its high-water mark.
#pragma once

#include <memory>
#include <vector>

#include "blkclone/internal/mutex.hpp"

namespace blkclone::internal {

template <class T>
class ObjectPool {
 public:
  // A recycled object, or a new value-initialised one; the caller resets fields.
  T* Get() {
    MutexLock lock(mu_);
    if (free_.empty()) {
      all_.push_back(std::make_unique<T>());
      return all_.back().get();
    }
    T* object = free_.back();
    free_.pop_back();
    return object;
  }
  void Put(T* object) {
    MutexLock lock(mu_);
    free_.push_back(object);
  }

 private:
  Mutex mu_;
  std::vector<std::unique_ptr<T>> all_ ABSL_GUARDED_BY(mu_);
  std::vector<T*> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone::internal

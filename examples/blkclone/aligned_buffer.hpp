// AlignedBuffer: an I/O buffer whose address suits every device it is used
// with (DeviceInfo::memory_alignment; O_DIRECT backends need 4096).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>

namespace blkclone::cli {

class AlignedBuffer {
 public:
  // `size` bytes aligned to `alignment` (a power of two).
  AlignedBuffer(size_t size, size_t alignment) : size_(size), data_(Allocate(size, alignment)) {}

  std::span<std::byte> span(size_t length) { return {data_.get(), length}; }
  std::byte* data() { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  static std::byte* Allocate(size_t size, size_t alignment) {
    alignment = std::max(alignment, sizeof(void*));
    // aligned_alloc wants a multiple of the alignment.
    void* p = std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }

  size_t size_;
  std::unique_ptr<std::byte[], Free> data_;
};

}  // namespace blkclone::cli

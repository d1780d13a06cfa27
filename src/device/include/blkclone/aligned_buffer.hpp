// AlignedBuffer: heap bytes at an address that is a multiple of a chosen
// alignment, as O_DIRECT, registered io_uring buffers and devices stating a
// DeviceInfo::memory_alignment need them. The one way the library, its
// backends, exports and tools allocate I/O buffers.
//
// Usage:
//   blkclone::AlignedBuffer buffer(1 << 20, device.info().memory_alignment);
//   request.data = buffer.data();           // or buffer.span().first(length)
//   auto zeroes = blkclone::AlignedBuffer::Zeroed(4096, 4096);
#pragma once

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <new>
#include <span>
#include <utility>

namespace blkclone {

// Owns `size()` bytes aligned to `alignment()`; move-only, like unique_ptr.
// A moved-from or default-constructed buffer is empty (no bytes, null data).
// Not thread-safe beyond what a plain array is: the owner decides who touches the bytes.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;

  // `size` bytes of unspecified contents at a multiple of `alignment`, a power
  // of two (0 counts as 1; alignments below the default for new are raised to
  // it). Throws std::bad_alloc as new does when memory runs out.
  AlignedBuffer(size_t size, size_t alignment)
      : size_(size), alignment_(Effective(alignment)), data_(Allocate(size_, alignment_)) {}

  // The same with every byte zero.
  static AlignedBuffer Zeroed(size_t size, size_t alignment) {
    AlignedBuffer buffer(size, alignment);
    std::memset(buffer.data_, 0, size);
    return buffer;
  }

  AlignedBuffer(AlignedBuffer&& other) noexcept
      : size_(std::exchange(other.size_, 0)),
        alignment_(other.alignment_),
        data_(std::exchange(other.data_, nullptr)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      Free();
      size_ = std::exchange(other.size_, 0);
      alignment_ = other.alignment_;
      data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { Free(); }

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The alignment the address has (at least the one asked for).
  size_t alignment() const { return alignment_; }
  std::span<std::byte> span() { return {data_, size_}; }
  std::span<const std::byte> span() const { return {data_, size_}; }

 private:
  static size_t Effective(size_t alignment) {
    assert(alignment == 0 || std::has_single_bit(alignment));
    return std::max<size_t>(alignment, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  }
  static std::byte* Allocate(size_t size, size_t alignment) {
    return static_cast<std::byte*>(::operator new[](size, std::align_val_t{alignment}));
  }
  void Free() {
    if (data_ != nullptr) ::operator delete[](data_, std::align_val_t{alignment_});
  }

  size_t size_ = 0;
  size_t alignment_ = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  std::byte* data_ = nullptr;
};

}  // namespace blkclone

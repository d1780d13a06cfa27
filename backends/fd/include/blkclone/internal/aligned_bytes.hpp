// Heap buffers with a chosen alignment, as O_DIRECT and registered io_uring
// buffers need them.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>

namespace blkclone::internal {

struct AlignedDelete {
  std::align_val_t alignment;
  void operator()(std::byte* p) const { ::operator delete[](p, alignment); }
};
using AlignedBytes = std::unique_ptr<std::byte[], AlignedDelete>;

// `size` zero bytes at an address that is a multiple of `alignment` (a power of two).
inline AlignedBytes AllocateAligned(size_t size, size_t alignment) {
  const std::align_val_t align{alignment};
  AlignedBytes bytes(static_cast<std::byte*>(::operator new[](size, align)), AlignedDelete{align});
  std::memset(bytes.get(), 0, size);
  return bytes;
}

}  // namespace blkclone::internal

// AlignedBuffer: alignment, size, zeroing and ownership moving between owners.
#include "blkclone/aligned_buffer.hpp"

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace blkclone {
namespace {

bool AlignedTo(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

TEST(AlignedBufferTest, HasTheSizeAndAlignmentAskedFor) {
  for (size_t alignment : {size_t{512}, size_t{4096}, size_t{65536}, size_t{1} << 21}) {
    for (size_t size : {size_t{1}, size_t{4096}, size_t{4097}, size_t{1} << 20}) {
      AlignedBuffer buffer(size, alignment);
      EXPECT_EQ(buffer.size(), size);
      EXPECT_FALSE(buffer.empty());
      EXPECT_EQ(buffer.alignment(), alignment);
      EXPECT_TRUE(AlignedTo(buffer.data(), alignment)) << size << " at " << alignment;
      EXPECT_EQ(buffer.span().data(), buffer.data());
      EXPECT_EQ(buffer.span().size(), size);
      buffer.data()[size - 1] = std::byte{1};  // every byte is usable (ASan checks)
    }
  }
}

TEST(AlignedBufferTest, SmallAlignmentsAreRaisedToWhatNewGives) {
  for (size_t alignment : {size_t{0}, size_t{1}, size_t{8}}) {
    AlignedBuffer buffer(100, alignment);
    EXPECT_GE(buffer.alignment(), alignment);
    EXPECT_EQ(buffer.alignment(), size_t{__STDCPP_DEFAULT_NEW_ALIGNMENT__});
    EXPECT_TRUE(AlignedTo(buffer.data(), buffer.alignment()));
  }
}

TEST(AlignedBufferTest, ZeroedHasEveryByteZero) {
  const AlignedBuffer buffer = AlignedBuffer::Zeroed(3 * 4096 + 5, 4096);
  EXPECT_TRUE(AlignedTo(buffer.data(), 4096));
  ASSERT_EQ(buffer.span().size(), 3u * 4096 + 5);
  for (std::byte b : buffer.span()) ASSERT_EQ(b, std::byte{0});
}

TEST(AlignedBufferTest, DefaultAndZeroSizedBuffersAreEmpty) {
  const AlignedBuffer none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.data(), nullptr);
  EXPECT_TRUE(none.span().empty());
  const AlignedBuffer zero(0, 4096);
  EXPECT_TRUE(zero.empty());
  EXPECT_TRUE(zero.span().empty());
}

TEST(AlignedBufferTest, MovingHandsTheBytesOverAndEmptiesTheSource) {
  static_assert(!std::is_copy_constructible_v<AlignedBuffer>);
  static_assert(!std::is_copy_assignable_v<AlignedBuffer>);
  static_assert(std::is_nothrow_move_constructible_v<AlignedBuffer>);
  static_assert(std::is_nothrow_move_assignable_v<AlignedBuffer>);

  AlignedBuffer first = AlignedBuffer::Zeroed(8192, 4096);
  first.data()[10] = std::byte{42};
  std::byte* const bytes = first.data();
  AlignedBuffer second(std::move(first));
  EXPECT_EQ(second.data(), bytes);
  EXPECT_EQ(second.size(), 8192u);
  EXPECT_EQ(second.alignment(), 4096u);
  EXPECT_EQ(second.data()[10], std::byte{42});
  EXPECT_TRUE(first.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is defined
  EXPECT_EQ(first.data(), nullptr);

  // Assignment frees what the target held (ASan/LSan would see a leak) and takes the rest.
  AlignedBuffer third(100, 65536);
  third = std::move(second);
  EXPECT_EQ(third.data(), bytes);
  EXPECT_EQ(third.alignment(), 4096u);
  EXPECT_TRUE(second.empty());  // NOLINT(bugprone-use-after-move)

  // Self-move keeps the bytes.
  AlignedBuffer& alias = third;
  third = std::move(alias);
  EXPECT_EQ(third.data(), bytes);

  // A moved-from buffer can be given bytes again.
  first = AlignedBuffer(512, 512);
  EXPECT_EQ(first.size(), 512u);
  EXPECT_TRUE(AlignedTo(first.data(), 512));
}

TEST(AlignedBufferTest, BuffersInAVectorSurviveItsGrowth) {
  std::vector<AlignedBuffer> buffers;
  std::vector<std::byte*> addresses;
  for (int i = 0; i < 20; ++i) {
    buffers.push_back(AlignedBuffer::Zeroed(4096, 4096));
    buffers.back().data()[0] = std::byte(i);
    addresses.push_back(buffers.back().data());
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(buffers[i].data(), addresses[i]);
    EXPECT_EQ(buffers[i].data()[0], std::byte(i));
  }
}

}  // namespace
}  // namespace blkclone

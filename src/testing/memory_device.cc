// MemoryDevice: RAM-backed device with a simulated volatile write cache.
#include "blkclone/testing/memory_device.hpp"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "blkclone/extents.hpp"
#include "blkclone/zeroes.hpp"

namespace blkclone {

absl::StatusOr<std::unique_ptr<MemoryDevice>> MemoryDevice::Create(const Options& options) {
  if (options.logical_block_size < 512 || !std::has_single_bit(options.logical_block_size))
    return absl::InvalidArgumentError(absl::StrCat(
        "memory device: logical block size ", options.logical_block_size,
        " is not a power of two >= 512"));
  if (options.size % options.logical_block_size != 0)
    return absl::InvalidArgumentError(absl::StrCat("memory device: size ", options.size,
                                                   " is not a multiple of the block size ",
                                                   options.logical_block_size));
  return std::unique_ptr<MemoryDevice>(new MemoryDevice(options));
}

MemoryDevice::MemoryDevice(const Options& options)
    : info_{.size = options.size,
            .logical_block_size = options.logical_block_size,
            .caps = options.caps},
      simulate_crashes_(options.simulate_crashes),
      current_(options.size),
      allocated_blocks_(options.size / options.logical_block_size) {
  if (simulate_crashes_) {
    durable_.resize(options.size);
    dirty_blocks_.resize(options.size / options.logical_block_size);
  }
}

void MemoryDevice::Submit(Request& request) noexcept {
  absl::Status status = ValidateRequest(info_, request);
  if (status.ok()) {
    internal::MutexLock lock(mu_);
    status = Apply(request);
  }
  request.Complete(std::move(status));
}

absl::Status MemoryDevice::Apply(const Request& request) {
  if (request.flags & kPreflush) MakeAllDurable();
  std::byte* target = current_.data() + request.offset;
  switch (request.op) {
    case Op::kRead:
      std::memcpy(request.data, target, request.length);
      return absl::OkStatus();
    case Op::kFlush:
      MakeAllDurable();
      return absl::OkStatus();
    case Op::kBlockStatus:
      DescribeAllocation(request);
      return absl::OkStatus();
    case Op::kWrite:
      std::memcpy(target, request.data, request.length);
      SetAllocated(request.offset, request.length, true);
      break;
    case Op::kDiscard:
    case Op::kWriteZeroes:
      std::memset(target, 0, request.length);
      SetAllocated(request.offset, request.length, false);
      break;
  }
  if (request.flags & kFua) {
    MakeDurable(request.offset, request.length);
  } else if (simulate_crashes_) {
    const uint64_t block = info_.logical_block_size;
    for (uint64_t b = request.offset / block; b < (request.offset + request.length) / block; ++b) {
      if (!dirty_blocks_[b]) dirty_list_.push_back(b);
      dirty_blocks_[b] = true;
    }
  }
  return absl::OkStatus();
}

void MemoryDevice::DescribeAllocation(const Request& request) const {
  const uint64_t block = info_.logical_block_size;
  request.extents->clear();
  for (uint64_t at = request.offset; at < request.offset + request.length; at += block)
    AppendExtent(*request.extents, at, block, !allocated_blocks_[at / block]);
}

// Whole blocks only; a block partly filled by Fill counts as data.
void MemoryDevice::SetAllocated(uint64_t offset, uint64_t length, bool allocated) {
  const uint64_t block = info_.logical_block_size;
  for (uint64_t b = offset / block; b < (offset + length + block - 1) / block; ++b)
    allocated_blocks_[b] = allocated;
}

void MemoryDevice::MakeDurable(uint64_t offset, uint64_t length) {
  if (!simulate_crashes_) return;
  std::memcpy(durable_.data() + offset, current_.data() + offset, length);
  const uint64_t block = info_.logical_block_size;
  for (uint64_t b = offset / block; b < (offset + length) / block; ++b) dirty_blocks_[b] = false;
}

void MemoryDevice::MakeAllDurable() {
  const uint64_t block = info_.logical_block_size;
  for (uint64_t b : dirty_list_) {
    if (!dirty_blocks_[b]) continue;  // made durable by a FUA write since
    std::memcpy(durable_.data() + b * block, current_.data() + b * block, block);
    dirty_blocks_[b] = false;
  }
  dirty_list_.clear();
}

void MemoryDevice::SimulateCrash() {
  internal::MutexLock lock(mu_);
  const uint64_t block = info_.logical_block_size;
  for (uint64_t b : dirty_list_) {
    if (!dirty_blocks_[b]) continue;
    std::memcpy(current_.data() + b * block, durable_.data() + b * block, block);
    allocated_blocks_[b] = true;
    dirty_blocks_[b] = false;
  }
  dirty_list_.clear();
}

std::vector<std::byte> MemoryDevice::Contents() const {
  internal::MutexLock lock(mu_);
  return current_;
}

void MemoryDevice::Fill(uint64_t offset, std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  internal::MutexLock lock(mu_);
  std::memcpy(current_.data() + offset, bytes.data(), bytes.size());
  SetAllocated(offset, bytes.size(), true);
  MakeDurable(offset, bytes.size());
}

void MemoryDevice::FillData(std::span<const std::byte> bytes) {
  const uint64_t block = info_.logical_block_size;
  for (uint64_t at = 0; at < bytes.size(); at += block) {
    std::span<const std::byte> piece = bytes.subspan(at, std::min<uint64_t>(block, bytes.size() - at));
    if (!IsAllZeroes(piece)) Fill(at, piece);
  }
}

}  // namespace blkclone

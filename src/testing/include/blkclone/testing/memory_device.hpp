// MemoryDevice: a BlockDevice in RAM, with optional power-failure simulation.
//
// It is thin like a sparse file: blocks never written, discarded or zeroed are
// holes, and kBlockStatus reports them (a block a crash restored counts as data).
//
// With `simulate_crashes`, the device keeps what is durable apart from what was
// only written: flushes and FUA writes make data durable, and SimulateCrash()
// forgets everything else, as a disk with a volatile write cache loses it on
// power failure. Requests complete inline, inside Submit.
//
//   auto dev = blkclone::MemoryDevice::Create({.size = 1 << 20, .simulate_crashes = true});
//   (void)blkclone::WriteAt(**dev, 0, data);     // not flushed
//   (*dev)->SimulateCrash();                     // gone again
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"

namespace blkclone {

class MemoryDevice {
 public:
  struct Options {
    uint64_t size = 0;
    uint32_t logical_block_size = 512;
    bool simulate_crashes = false;
    Capabilities caps = {.discard = true,
                         .discard_zeroes_data = true,
                         .write_zeroes = true,
                         .block_status = true,
                         .volatile_write_cache = true,
                         .fua = FuaSupport::kNative};
  };

  // Fails with kInvalidArgument unless the block size is a power of two >= 512
  // and the size is a multiple of it.
  static absl::StatusOr<std::unique_ptr<MemoryDevice>> Create(const Options& options);

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;

  // Drops every change not yet durable (nothing without simulate_crashes).
  void SimulateCrash();
  // A copy of the current content (what reads return).
  std::vector<std::byte> Contents() const;
  // Overwrites the content, durably, bypassing the request path (test set-up).
  void Fill(uint64_t offset, std::span<const std::byte> bytes);
  // Fill from offset 0 of a fresh device, leaving the all-zero blocks holes.
  void FillData(std::span<const std::byte> bytes);

 private:
  MemoryDevice(const Options& options);

  absl::Status Apply(const Request& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DescribeAllocation(const Request& request) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetAllocated(uint64_t offset, uint64_t length, bool allocated)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MakeDurable(uint64_t offset, uint64_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MakeAllDurable() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DeviceInfo info_;
  const bool simulate_crashes_;
  mutable internal::Mutex mu_;
  std::vector<std::byte> current_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> allocated_blocks_ ABSL_GUARDED_BY(mu_);  // of current_
  // Only with simulate_crashes: what survives a crash, and which blocks differ.
  std::vector<std::byte> durable_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> dirty_blocks_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> dirty_list_ ABSL_GUARDED_BY(mu_);  // may hold clean blocks
};

static_assert(BlockDevice<MemoryDevice>);

}  // namespace blkclone

// AnyBlockDevice: a BlockDevice whose backend is chosen at run time.
//
// The engine is a template over its devices for speed; programs that pick the
// backend from a command line wrap each device here and instantiate the engine
// once, over AnyBlockDevice. One virtual call per request is the cost.
//
//   blkclone::AnyBlockDevice source =
//       use_memory ? blkclone::AnyBlockDevice(std::move(memory_device))
//                  : blkclone::AnyBlockDevice(std::move(file_device));
//   blkclone::AnyBlockDevice view = blkclone::AnyBlockDevice::Borrow(other_device);
#pragma once

#include <memory>
#include <utility>

#include "blkclone/block_device.hpp"

namespace blkclone {

class AnyBlockDevice {
 public:
  // Takes ownership of `device`.
  template <BlockDevice D>
  explicit AnyBlockDevice(std::unique_ptr<D> device)
      : impl_(std::make_unique<Model<std::unique_ptr<D>>>(std::move(device))) {}

  // Refers to `device` without owning it; `device` must outlive the result.
  template <BlockDevice D>
  static AnyBlockDevice Borrow(D& device) {
    return AnyBlockDevice(std::make_unique<Model<D*>>(&device));
  }

  const DeviceInfo& info() const { return impl_->info(); }
  void Submit(Request& request) noexcept { impl_->Submit(request); }

 private:
  struct Interface {
    virtual ~Interface() = default;
    virtual const DeviceInfo& info() const = 0;
    virtual void Submit(Request& request) noexcept = 0;
  };

  // `Pointer` is D* or std::unique_ptr<D>.
  template <class Pointer>
  struct Model final : Interface {
    explicit Model(Pointer p) : device(std::move(p)) {}
    const DeviceInfo& info() const override { return device->info(); }
    void Submit(Request& request) noexcept override { device->Submit(request); }
    Pointer device;
  };

  explicit AnyBlockDevice(std::unique_ptr<Interface> impl) : impl_(std::move(impl)) {}

  std::unique_ptr<Interface> impl_;
};

static_assert(BlockDevice<AnyBlockDevice>);

}  // namespace blkclone

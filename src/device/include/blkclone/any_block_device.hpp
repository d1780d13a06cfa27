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
#include <type_traits>
#include <typeinfo>
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

  // The device inside if it is a D (owned or borrowed), else null: for what
  // needs the concrete backend, such as a copier made for it.
  template <BlockDevice D>
  D* As() noexcept {
    return static_cast<D*>(impl_->Target(typeid(D)));
  }

 private:
  struct Interface {
    virtual ~Interface() = default;
    virtual const DeviceInfo& info() const = 0;
    virtual void Submit(Request& request) noexcept = 0;
    virtual void* Target(const std::type_info& type) noexcept = 0;
  };

  // `Pointer` is D* or std::unique_ptr<D>.
  template <class Pointer>
  struct Model final : Interface {
    explicit Model(Pointer p) : device(std::move(p)) {}
    const DeviceInfo& info() const override { return device->info(); }
    void Submit(Request& request) noexcept override { device->Submit(request); }
    void* Target(const std::type_info& type) noexcept override {
      using D = std::remove_reference_t<decltype(*device)>;
      return type == typeid(D) ? static_cast<void*>(&*device) : nullptr;
    }
    Pointer device;
  };

  explicit AnyBlockDevice(std::unique_ptr<Interface> impl) : impl_(std::move(impl)) {}

  std::unique_ptr<Interface> impl_;
};

static_assert(BlockDevice<AnyBlockDevice>);

}  // namespace blkclone

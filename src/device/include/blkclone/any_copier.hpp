// AnyCopier: a Copier whose kind is chosen at run time, with a name for logs.
//
// The engine is a template over its copier; a session picks the fastest copier
// its devices allow (see FastestCopier in device_registry.hpp) and wraps it
// here, for one virtual call per job.
//
//   blkclone::AnyCopier copier(std::make_unique<blkclone::BufferedCopier<A, B>>(a, b),
//                              "buffered");
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "blkclone/copier.hpp"

namespace blkclone {

class AnyCopier {
 public:
  // Takes ownership of `copier`, which must be destroyed before the devices it
  // copies between.
  template <Copier C>
  AnyCopier(std::unique_ptr<C> copier, std::string name)
      : impl_(std::make_unique<Model<C>>(std::move(copier))), name_(std::move(name)) {}

  void Copy(CopyJob& job) noexcept { impl_->Copy(job); }
  // "io_uring", "copy_file_range", "buffered".
  const std::string& name() const { return name_; }

 private:
  struct Interface {
    virtual ~Interface() = default;
    virtual void Copy(CopyJob& job) noexcept = 0;
  };
  template <Copier C>
  struct Model final : Interface {
    explicit Model(std::unique_ptr<C> c) : copier(std::move(c)) {}
    void Copy(CopyJob& job) noexcept override { copier->Copy(job); }
    std::unique_ptr<C> copier;
  };

  std::unique_ptr<Interface> impl_;
  std::string name_;
};

static_assert(Copier<AnyCopier>);

}  // namespace blkclone

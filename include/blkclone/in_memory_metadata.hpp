// InMemoryMetadata: Metadata kept in RAM. Its "persisted" state is a second map
// that only CommitSealed updates, so tests can crash a clone and reopen it from
// exactly what a real store would have committed.
//
//   InMemoryMetadata meta(geometry);
//   ... run a clone, crash its destination ...
//   InMemoryMetadata reopened(geometry, meta.CommittedRegions());
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "blkclone/internal/mutex.hpp"
#include "blkclone/metadata.hpp"

namespace blkclone {

class InMemoryMetadata final : public Metadata {
 public:
  explicit InMemoryMetadata(const CloneGeometry& geometry);
  // Starts from `committed`, a bit per region, as if reopened after a crash.
  InMemoryMetadata(const CloneGeometry& geometry, const std::vector<bool>& committed);

  const CloneGeometry& geometry() const override { return geometry_; }
  const RegionMap& map() const override { return *map_.load(std::memory_order_acquire); }
  void MarkHydrated(uint64_t first, uint64_t count) override;
  void Seal() override;
  absl::Status CommitSealed() override;
  absl::Status ReloadCommitted() override;
  MetadataUsage usage() const override;
  void ReleaseMapIfComplete() override;

  // Makes the next CommitSealed fail with `error`, committing nothing.
  void FailNextCommit(absl::Status error = absl::InternalError("metadata write failed"));
  // Makes the next ReloadCommitted fail with `error` (an unreadable device).
  void FailNextReload(absl::Status error = absl::DataLossError("metadata unreadable"));
  // What a crash right now would leave: the committed regions.
  std::vector<bool> CommittedRegions() const;
  uint64_t commits() const;

 private:
  using Range = std::pair<uint64_t, uint64_t>;  // first, count

  std::unique_ptr<RegionMap> MapOf(const std::vector<bool>& regions) const;

  const CloneGeometry geometry_;
  mutable internal::Mutex mu_;
  std::vector<std::unique_ptr<RegionMap>> maps_ ABSL_GUARDED_BY(mu_);  // the last is current
  std::atomic<const RegionMap*> map_;
  std::vector<Range> pending_ ABSL_GUARDED_BY(mu_);  // marked since the last Seal
  std::vector<Range> sealed_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> committed_ ABSL_GUARDED_BY(mu_);
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status commit_error_ ABSL_GUARDED_BY(mu_);
  absl::Status reload_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

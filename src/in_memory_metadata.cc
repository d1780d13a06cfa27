// InMemoryMetadata: two maps, the live one and the committed one.
#include "blkclone/in_memory_metadata.hpp"

#include <utility>

namespace blkclone {

InMemoryMetadata::InMemoryMetadata(const CloneGeometry& geometry)
    : InMemoryMetadata(geometry, std::vector<bool>(geometry.region_count)) {}

InMemoryMetadata::InMemoryMetadata(const CloneGeometry& geometry,
                                   const std::vector<bool>& committed)
    : geometry_(geometry), committed_(committed) {
  committed_.resize(geometry.region_count);
  internal::MutexLock lock(mu_);
  maps_.push_back(MapOf(committed_));
  map_.store(maps_.back().get(), std::memory_order_release);
}

std::unique_ptr<RegionMap> InMemoryMetadata::MapOf(const std::vector<bool>& regions) const {
  auto map = std::make_unique<RegionMap>(geometry_.region_count);
  for (uint64_t r = 0; r < regions.size(); ++r) {
    if (regions[r]) map->Set(r);
  }
  return map;
}

void InMemoryMetadata::MarkHydrated(uint64_t first, uint64_t count) {
  internal::MutexLock lock(mu_);
  maps_.back()->SetRange(first, count);
  pending_.emplace_back(first, count);
}

void InMemoryMetadata::Seal() {
  internal::MutexLock lock(mu_);
  sealed_.insert(sealed_.end(), pending_.begin(), pending_.end());
  pending_.clear();
}

absl::Status InMemoryMetadata::CommitSealed() {
  internal::MutexLock lock(mu_);
  if (!commit_error_.ok()) return std::exchange(commit_error_, absl::OkStatus());
  for (auto [first, count] : sealed_) {
    for (uint64_t r = first; r < first + count && r < committed_.size(); ++r) committed_[r] = true;
  }
  sealed_.clear();
  ++commits_;
  return absl::OkStatus();
}

absl::Status InMemoryMetadata::ReloadCommitted() {
  internal::MutexLock lock(mu_);
  if (!reload_error_.ok()) return std::exchange(reload_error_, absl::OkStatus());
  pending_.clear();
  sealed_.clear();
  maps_.push_back(MapOf(committed_));
  map_.store(maps_.back().get(), std::memory_order_release);
  return absl::OkStatus();
}

void InMemoryMetadata::ReleaseMapIfComplete() {
  internal::MutexLock lock(mu_);
  maps_.back()->ReleaseIfComplete();
}

void InMemoryMetadata::FailNextCommit(absl::Status error) {
  internal::MutexLock lock(mu_);
  commit_error_ = std::move(error);
}

void InMemoryMetadata::FailNextReload(absl::Status error) {
  internal::MutexLock lock(mu_);
  reload_error_ = std::move(error);
}

MetadataUsage InMemoryMetadata::usage() const {
  const uint64_t bitmap_blocks = (geometry_.region_count + 32767) / 32768;
  return MetadataUsage{.block_size = 4096, .used_blocks = 1 + bitmap_blocks,
                       .total_blocks = 1 + bitmap_blocks};
}

std::vector<bool> InMemoryMetadata::CommittedRegions() const {
  internal::MutexLock lock(mu_);
  return committed_;
}

uint64_t InMemoryMetadata::commits() const {
  internal::MutexLock lock(mu_);
  return commits_;
}

}  // namespace blkclone

// InMemoryMetadata: two maps, the live one and the committed one.
#include "blkclone/in_memory_metadata.hpp"

namespace blkclone {

InMemoryMetadata::InMemoryMetadata(const CloneGeometry& geometry)
    : InMemoryMetadata(geometry, std::vector<bool>(geometry.region_count)) {}

InMemoryMetadata::InMemoryMetadata(const CloneGeometry& geometry,
                                   const std::vector<bool>& committed)
    : geometry_(geometry), map_(geometry.region_count), committed_(committed) {
  committed_.resize(geometry.region_count);
  for (uint64_t r = 0; r < committed_.size(); ++r) {
    if (committed_[r]) map_.Set(r);
  }
}

void InMemoryMetadata::MarkHydrated(uint64_t first, uint64_t count) {
  internal::MutexLock lock(mu_);
  map_.SetRange(first, count);
  pending_.emplace_back(first, count);
}

void InMemoryMetadata::Seal() {
  internal::MutexLock lock(mu_);
  sealed_.insert(sealed_.end(), pending_.begin(), pending_.end());
  pending_.clear();
}

absl::Status InMemoryMetadata::CommitSealed() {
  internal::MutexLock lock(mu_);
  for (auto [first, count] : sealed_) {
    for (uint64_t r = first; r < first + count && r < committed_.size(); ++r) committed_[r] = true;
  }
  sealed_.clear();
  ++commits_;
  return absl::OkStatus();
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

// The source's allocation, asked a window at a time and cached.
#include "blkclone/source_allocation.hpp"

#include <algorithm>

#include "blkclone/extents.hpp"

namespace blkclone {

struct SourceAllocation::Window {
  SourceAllocation* owner = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool known = false;
  uint64_t last_use = 0;
  std::vector<Extent> extents;  // once known
  Request request;              // while asked
  std::vector<Extent> answer;
};

SourceAllocation::SourceAllocation(uint64_t size, uint64_t block, uint64_t coarse,
                                   SubmitFn submit, FailureFn on_failure,
                                   const SourceAllocationOptions& options)
    : size_(size),
      block_(block),
      coarse_(std::max(coarse, block)),
      window_(std::max(options.window / coarse_, uint64_t{1}) * coarse_),
      options_(options),
      submit_(std::move(submit)),
      on_failure_(std::move(on_failure)),
      enabled_(submit_ != nullptr) {}

SourceAllocation::~SourceAllocation() {
  internal::MutexLock lock(mu_);
  answered_cv_.Wait(mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return asking_ == 0; });
}

bool SourceAllocation::enabled() const {
  internal::MutexLock lock(mu_);
  return enabled_;
}

SourceAllocation::Window* SourceAllocation::FindLocked(uint64_t offset, Window*& to_ask) {
  const uint64_t index = offset / window_;
  auto [it, inserted] = windows_.try_emplace(index);
  if (inserted) {
    EvictLocked();
    it->second = std::make_unique<Window>();
    Window& window = *it->second;
    window.owner = this;
    window.offset = index * window_;
    window.length = std::min(window_, size_ - window.offset);
    ++asking_;
    to_ask = &window;
    return nullptr;
  }
  Window& window = *it->second;
  if (!window.known) return nullptr;
  window.last_use = ++uses_;
  return &window;
}

// Keeps at most max_windows answers: the least recently used known one goes.
void SourceAllocation::EvictLocked() {
  if (windows_.size() <= options_.max_windows) return;
  auto oldest = windows_.end();
  for (auto it = windows_.begin(); it != windows_.end(); ++it) {
    if (it->second == nullptr || !it->second->known) continue;
    if (oldest == windows_.end() || it->second->last_use < oldest->second->last_use) oldest = it;
  }
  if (oldest != windows_.end()) windows_.erase(oldest);
}

void SourceAllocation::Ask(Window& window) {
  window.request = Request::BlockStatus(window.offset, window.length, &window.answer);
  window.request.context = &window;
  window.request.on_complete = &OnAnswer;
  submit_(window.request);
}

void SourceAllocation::OnAnswer(Request& request, absl::Status status) {
  Window& window = *static_cast<Window*>(request.context);
  SourceAllocation& self = *window.owner;
  if (status.ok()) status = CheckExtents(window.answer, window.offset, window.length, 1);
  std::vector<Extent> extents = {{.offset = window.offset, .length = window.length}};
  if (status.ok()) {
    for (uint64_t unit : {self.block_, self.coarse_}) {
      std::vector<Extent> rounded = RoundExtents(window.answer, window.offset, window.length, unit);
      if (rounded.size() <= self.options_.max_extents_per_window) {
        extents = std::move(rounded);
        break;
      }
    }
  } else {
    bool first_failure;
    {
      internal::MutexLock lock(self.mu_);
      first_failure = std::exchange(self.enabled_, false);
    }
    if (first_failure && self.on_failure_) self.on_failure_(status);
  }
  // Known, and so evictable, only now that nothing here touches it any more.
  internal::MutexLock lock(self.mu_);
  window.answer = {};
  window.extents = std::move(extents);
  window.known = true;
  window.last_use = ++self.uses_;
  --self.asking_;
  self.answered_cv_.SignalAll();
}

bool SourceAllocation::Lookup(uint64_t offset, uint64_t length, std::vector<Extent>& out) {
  out.clear();
  Window* to_ask = nullptr;
  {
    internal::MutexLock lock(mu_);
    const bool in_one_window = offset / window_ == (offset + length - 1) / window_;
    if (!enabled_ || length == 0) {
      AppendExtent(out, offset, length, /*hole=*/false);
      return true;
    }
    if (const Window* window = in_one_window ? FindLocked(offset, to_ask) : nullptr) {
      auto it = std::upper_bound(window->extents.begin(), window->extents.end(), offset,
                                 [](uint64_t at, const Extent& e) { return at < e.end(); });
      for (; it != window->extents.end() && it->offset < offset + length; ++it) {
        const uint64_t begin = std::max(it->offset, offset);
        AppendExtent(out, begin, std::min(it->end(), offset + length) - begin, it->hole);
      }
      return true;
    }
  }
  if (to_ask != nullptr) Ask(*to_ask);
  return false;
}

std::optional<uint64_t> SourceAllocation::HoleEnd(uint64_t offset) {
  Window* to_ask = nullptr;
  {
    internal::MutexLock lock(mu_);
    if (!enabled_) return offset;
    if (const Window* window = FindLocked(offset, to_ask)) {
      auto it = std::upper_bound(window->extents.begin(), window->extents.end(), offset,
                                 [](uint64_t at, const Extent& e) { return at < e.end(); });
      return it != window->extents.end() && it->hole ? it->end() : offset;
    }
  }
  if (to_ask != nullptr) Ask(*to_ask);
  return std::nullopt;
}

void SourceAllocation::WaitUntilKnown(uint64_t offset) {
  Window* to_ask = nullptr;
  {
    internal::MutexLock lock(mu_);
    if (!enabled_ || FindLocked(offset, to_ask) != nullptr) return;
  }
  if (to_ask != nullptr) Ask(*to_ask);
  internal::MutexLock lock(mu_);
  answered_cv_.Wait(mu_, [this, offset]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = windows_.find(offset / window_);
    return !enabled_ || it == windows_.end() || it->second->known;  // gone: it was known
  });
}

}  // namespace blkclone

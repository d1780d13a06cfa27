// FaultInjectingDevice: makes chosen requests to another device fail, like
// dm-flakey and dm-dust, to test error paths.
//
// A rule picks requests by op and byte range, then decides which of those fail:
// skip the first `skip`, fail the next `count` (each with `probability`, drawn
// from a generator seeded per rule, so a run is reproducible). A failing request
// completes with the rule's error without reaching the inner device, or, with
// `pass_through`, after the inner device performed it: a write that lands but
// reports an error. Requests no rule fails go to the inner device untouched.
//
//   blkclone::FaultInjectingDevice faulty(*memory_device);
//   faulty.AddRule({.ops = {blkclone::Op::kWrite},
//                   .range = blkclone::ByteRange{.offset = 0, .length = 4096},
//                   .skip = 1,
//                   .count = 2});
//   // The 2nd and 3rd writes touching the first 4 KiB fail with a kInternal error.
#pragma once

#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/status.hpp"
#include "blkclone/testing/device_wrapper.hpp"

namespace blkclone {

// A set of ops, e.g. OpSet{Op::kWrite, Op::kFlush}.
class OpSet {
 public:
  constexpr OpSet(std::initializer_list<Op> ops) {
    for (Op op : ops) bits_ |= Bit(op);
  }
  static constexpr OpSet All() {
    return {Op::kRead, Op::kWrite, Op::kFlush, Op::kDiscard, Op::kWriteZeroes, Op::kBlockStatus};
  }
  constexpr bool Contains(Op op) const { return (bits_ & Bit(op)) != 0; }

 private:
  static constexpr uint8_t Bit(Op op) { return static_cast<uint8_t>(1u << static_cast<int>(op)); }
  uint8_t bits_ = 0;
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct FaultRule {
  static constexpr uint64_t kForever = std::numeric_limits<uint64_t>::max();

  OpSet ops = OpSet::All();
  // If set, only requests overlapping it match; a flush covers no bytes, so it never does.
  std::optional<ByteRange> range = std::nullopt;
  // Of the matching requests the first `skip` pass; after them up to `count` fail.
  uint64_t skip = 0;
  uint64_t count = kForever;
  // Below 1, each candidate past `skip` fails only with this probability.
  double probability = 1.0;
  uint64_t seed = 0;
  // What a failed request completes with; OK stands for an EIO-like kInternal
  // error that names the op and range, as a disk would report.
  absl::Status error = absl::OkStatus();
  // The failed request is performed by the inner device before it fails.
  bool pass_through = false;
};

struct FaultCounters {
  PerOp<uint64_t> injected;  // requests failed, by op
  uint64_t matched = 0;      // requests some rule matched, failed or not
};

template <BlockDevice Inner>
class FaultInjectingDevice {
 public:
  explicit FaultInjectingDevice(Inner& inner) : inner_(inner) {}

  const DeviceInfo& info() const { return inner_.info(); }
  void Submit(Request& request) noexcept {
    std::optional<Fault> fault = Decide(request);
    if (!fault) {
      inner_.Submit(request);
    } else if (!fault->pass_through) {
      request.Complete(std::move(fault->error));
    } else {
      internal::ForwardCopy(inner_, request,
                            [error = std::move(fault->error)](Request& r, absl::Status) mutable {
                              r.Complete(std::move(error));
                            });
    }
  }

  // Rules are consulted in the order they were added; the first one that fails
  // a request decides its error, and the rules after it do not see the request.
  void AddRule(FaultRule rule) {
    std::mt19937_64 rng(rule.seed);
    internal::MutexLock lock(mu_);
    rules_.push_back({.rule = std::move(rule), .rng = std::move(rng)});
  }
  // Later requests all pass; the counters keep their values.
  void ClearRules() {
    internal::MutexLock lock(mu_);
    rules_.clear();
  }
  FaultCounters counters() const {
    internal::MutexLock lock(mu_);
    return counters_;
  }

 private:
  struct ActiveRule {
    FaultRule rule;
    std::mt19937_64 rng;
    uint64_t seen = 0;
    uint64_t failed = 0;
  };
  struct Fault {
    absl::Status error;
    bool pass_through;
  };

  // Overflow-safe: offsets near 2^64 come from invalid requests, which rules still see.
  static bool Overlaps(const Request& request, const ByteRange& range) {
    return request.offset <= range.offset ? range.offset - request.offset < request.length
                                          : request.offset - range.offset < range.length;
  }

  static bool Matches(const ActiveRule& active, const Request& request) {
    return active.rule.ops.Contains(request.op) &&
           (!active.rule.range || Overlaps(request, *active.rule.range));
  }

  // Called for each matching request, in submission order.
  static bool Fires(ActiveRule& active) {
    if (active.seen++ < active.rule.skip || active.failed >= active.rule.count) return false;
    if (active.rule.probability < 1.0 &&
        !std::bernoulli_distribution(active.rule.probability)(active.rng))
      return false;
    ++active.failed;
    return true;
  }

  // How `request` fails, if a rule fails it; advances every rule that sees it.
  std::optional<Fault> Decide(const Request& request) {
    internal::MutexLock lock(mu_);
    bool matched = false;
    std::optional<Fault> fault;
    for (ActiveRule& active : rules_) {
      if (!Matches(active, request)) continue;
      matched = true;
      if (Fires(active)) {
        fault = Fault{.error = active.rule.error, .pass_through = active.rule.pass_through};
        if (fault->error.ok())
          fault->error = ErrnoStatus(EIO, absl::StrCat("injected ", OpName(request.op)),
                                     request.offset, request.length);
        ++counters_.injected[request.op];
        break;
      }
    }
    if (matched) ++counters_.matched;
    return fault;
  }

  Inner& inner_;
  mutable internal::Mutex mu_;
  std::vector<ActiveRule> rules_ ABSL_GUARDED_BY(mu_);
  FaultCounters counters_ ABSL_GUARDED_BY(mu_);
};

static_assert(BlockDevice<FaultInjectingDevice<AnyBlockDevice>>);

}  // namespace blkclone

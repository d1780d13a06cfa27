// Model-based test of the clone engine (rapidcheck rc::state): random
// sequences of reads, writes, write-zeroes, discards, flushes, failing commits
// and crashes, over random geometries (several region sizes, with and without
// a short last region), checked against a block-level model of what the clone
// must return.
//
// The model keeps, per 512-byte block, the value the clone must return now, the
// value that is durable, and the values written since that point. A crash
// (destination loses unflushed writes, metadata reverts to its last commit) may
// leave any of those; a discarded block may hold anything until rewritten.
// Per region it keeps whether the clone's map and its last commit hold it, and
// the metadata mode: a failed commit makes the clone ro (or Fail, when the
// reload fails too) with the committed map, until the next crash and reopen.
// The rules: an acknowledged FLUSH or FUA means the data is durable; an
// acknowledged write reads back until a crash (I3); a request that would need
// a mark, or a commit of the marks the failure dropped, fails outside rw.
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "gtest/gtest.h"
#include "rapidcheck.h"
#include "rapidcheck/gtest.h"
#include "rapidcheck/state.h"

namespace blkclone {
namespace {

constexpr uint64_t kBlock = 512;
// Block values: a write's seed (>= 0), or one of these.
constexpr int64_t kSourceValue = -1;
constexpr int64_t kAnything = -2;  // discarded: any content is right
constexpr int64_t kZeroValue = -3;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// The content of `block` for a seed value: distinct per seed and per block.
void FillSeeded(int64_t seed, uint64_t block, std::byte* out) {
  for (uint64_t i = 0; i < kBlock; i += 8) {
    uint64_t word = Mix(static_cast<uint64_t>(seed) * 1000003 + block * 131 + i);
    std::memcpy(out + i, &word, 8);
  }
}

struct BlockState {
  int64_t value = kSourceValue;
  int64_t durable = kSourceValue;
  std::vector<int64_t> since_durable;  // values that may have reached the disk
};

struct Model {
  uint64_t region_size = 0;
  uint64_t source_size = 0;
  std::vector<BlockState> blocks;
  std::vector<bool> hydrated;   // the clone's map, per region
  std::vector<bool> committed;  // its last commit
  CloneMode mode = CloneMode::kReadWrite;
  int64_t next_seed = 0;

  uint64_t block_count() const { return blocks.size(); }
  uint64_t blocks_per_region() const { return region_size / kBlock; }
  uint64_t RegionOf(uint64_t block) const { return block / blocks_per_region(); }
  bool owed() const { return hydrated != committed; }

  // Whole regions a discard of the block range covers (the short last one
  // counts when the discard reaches the end).
  std::pair<uint64_t, uint64_t> DiscardedRegions(uint64_t first, uint64_t count) const {
    const uint64_t per = blocks_per_region();
    const uint64_t end = first + count;
    return {(first + per - 1) / per, end == block_count() ? (end + per - 1) / per : end / per};
  }

  // A commit in rw: every mark is committed, every block's value durable.
  void Commit() {
    committed = hydrated;
    for (uint64_t b = 0; b < block_count(); ++b) Set(b, 1, blocks[b].value, true);
  }

  // Every region in the block range is hydrated.
  bool Hydrated(uint64_t first, uint64_t count) const {
    for (uint64_t b = first; b < first + count; ++b)
      if (!hydrated[RegionOf(b)]) return false;
    return true;
  }

  void Set(uint64_t first, uint64_t count, int64_t value, bool durable) {
    for (uint64_t b = first; b < first + count; ++b) {
      BlockState& s = blocks[b];
      s.value = value;
      if (durable) {
        s.durable = value;
        s.since_durable.clear();
      } else {
        s.since_durable.push_back(value);
      }
    }
  }
};

struct Sut {
  using Base = BufferedCopier<MemoryDevice, MemoryDevice>;
  using TestClone = Clone<MemoryDevice, MemoryDevice, Base>;

  Sut(const Model& model) {
    source = *MemoryDevice::Create({.size = model.source_size, .caps = {}});
    source_bytes.resize(model.source_size);
    for (uint64_t b = 0; b < model.block_count(); ++b)
      FillSeeded(1'000'000'007, b, source_bytes.data() + b * kBlock);
    source->Fill(0, source_bytes);
    dest = *MemoryDevice::Create({.size = model.source_size, .simulate_crashes = true});
    geometry = *MakeCloneGeometry(source->info(), dest->info(), model.region_size);
    Open(std::vector<bool>(geometry.region_count));
  }

  void Open(const std::vector<bool>& committed) {
    clone.reset();
    copier.reset();
    metadata = std::make_unique<InMemoryMetadata>(geometry, committed);
    copier = std::make_unique<Base>(*source, *dest, BufferedCopierOptions{.chunk_size = 8192});
    clone = *TestClone::Create(*source, *dest, *copier, *metadata,
                               {.commit_interval = std::chrono::hours(1)});
  }

  // Power failure: the destination keeps what was durable, the metadata what
  // was committed; the old clone object is then discarded.
  void Crash() {
    std::vector<bool> committed = metadata->CommittedRegions();
    dest->SimulateCrash();
    Open(committed);
  }

  void Expected(int64_t value, uint64_t block, std::byte* out) const {
    if (value == kSourceValue) {
      std::memcpy(out, source_bytes.data() + block * kBlock, kBlock);
    } else if (value == kZeroValue) {
      std::memset(out, 0, kBlock);
    } else {
      FillSeeded(value, block, out);
    }
  }

  bool Matches(int64_t value, uint64_t block, const std::byte* actual) const {
    if (value == kAnything) return true;
    std::byte expected[kBlock];
    Expected(value, block, expected);
    return std::memcmp(expected, actual, kBlock) == 0;
  }

  std::unique_ptr<MemoryDevice> source, dest;
  std::vector<std::byte> source_bytes;
  CloneGeometry geometry;
  std::unique_ptr<InMemoryMetadata> metadata;
  std::unique_ptr<Base> copier;
  std::unique_ptr<TestClone> clone;
};

using Command = rc::state::Command<Model, Sut>;

// A random block range, at most three regions long.
std::pair<uint64_t, uint64_t> GenRange(const Model& m) {
  const uint64_t first = *rc::gen::inRange<uint64_t>(0, m.block_count());
  const uint64_t max_len = std::min(m.block_count() - first, 3 * m.blocks_per_region());
  const uint64_t count = *rc::gen::inRange<uint64_t>(1, max_len + 1);
  return {first, count};
}

struct Read : Command {
  std::pair<uint64_t, uint64_t> range;
  explicit Read(const Model& m) : range(GenRange(m)) {}
  void apply(Model&) const override {}
  void run(const Model& m, Sut& s) const override {
    std::vector<std::byte> data(range.second * kBlock);
    const absl::Status status = ReadAt(*s.clone, range.first * kBlock, data);
    RC_ASSERT(status.ok() == (m.mode != CloneMode::kFail));
    if (!status.ok()) return;
    for (uint64_t i = 0; i < range.second; ++i) {
      const uint64_t b = range.first + i;
      RC_ASSERT(s.Matches(m.blocks[b].value, b, data.data() + i * kBlock));
    }
  }
  void show(std::ostream& os) const override {
    os << "Read(block " << range.first << ", " << range.second << ")";
  }
};

struct Write : Command {
  std::pair<uint64_t, uint64_t> range;
  int64_t seed = 0;
  bool zeroes = *rc::gen::element(false, false, false, true);
  uint8_t flags = *rc::gen::element<uint8_t>(kNoFlags, kNoFlags, kFua, kPreflush);
  explicit Write(const Model& m) : range(GenRange(m)), seed(m.next_seed) {}
  int64_t value() const { return zeroes ? kZeroValue : seed; }
  // In rw every region it touches is hydrated. Outside rw: a PREFLUSH fails
  // first (a commit is owed), and only pieces in
  // hydrated regions land; FUA then fails at its commit, so the model counts
  // what landed as not durable (a crash may keep either).
  void apply(Model& m) const override {
    ++m.next_seed;
    if (m.mode == CloneMode::kReadWrite) {
      if (flags & kPreflush) m.Commit();
      for (uint64_t b = range.first; b < range.first + range.second; ++b)
        m.hydrated[m.RegionOf(b)] = true;
      // A FUA write commits when the map changed (flushing everything), else
      // only its own blocks are durable.
      const bool commits = (flags & kFua) && m.owed();
      m.Set(range.first, range.second, value(), (flags & kFua) != 0);
      if (commits) m.Commit();
    } else if (m.mode == CloneMode::kReadOnly && !(flags & kPreflush)) {
      for (uint64_t b = range.first; b < range.first + range.second; ++b)
        if (m.hydrated[m.RegionOf(b)]) m.Set(b, 1, value(), false);
    }
  }
  bool Succeeds(const Model& m) const {
    return m.mode == CloneMode::kReadWrite ||
           (m.mode == CloneMode::kReadOnly && flags == kNoFlags &&
            m.Hydrated(range.first, range.second));
  }
  void run(const Model& m, Sut& s) const override {
    const uint64_t offset = range.first * kBlock, length = range.second * kBlock;
    absl::Status status;
    if (zeroes) {
      status = WriteZeroes(*s.clone, offset, length, flags);
    } else {
      std::vector<std::byte> data(length);
      for (uint64_t i = 0; i < range.second; ++i)
        FillSeeded(seed, range.first + i, data.data() + i * kBlock);
      status = WriteAt(*s.clone, offset, data, flags);
    }
    RC_ASSERT(status.ok() == Succeeds(m));
  }
  void show(std::ostream& os) const override {
    os << (zeroes ? "WriteZeroes" : "Write") << "(block " << range.first << ", " << range.second
       << ", seed " << seed << ", flags " << int(flags) << ")";
  }
};

struct DiscardCmd : Command {
  std::pair<uint64_t, uint64_t> range;
  explicit DiscardCmd(const Model& m) : range(GenRange(m)) {}
  // Only regions covered whole change; their content is then unspecified. In
  // ro only a range already hydrated is passed down; any other is ignored.
  void apply(Model& m) const override {
    const auto [first_region, end_region] = m.DiscardedRegions(range.first, range.second);
    if (m.mode == CloneMode::kFail) return;
    if (m.mode == CloneMode::kReadOnly) {
      for (uint64_t r = first_region; r < end_region; ++r)
        if (!m.hydrated[r]) return;
    }
    const uint64_t per = m.blocks_per_region();
    for (uint64_t r = first_region; r < end_region; ++r) {
      m.hydrated[r] = true;
      m.Set(r * per, std::min(per, m.block_count() - r * per), kAnything, false);
    }
  }
  void run(const Model& m, Sut& s) const override {
    const absl::Status status = Discard(*s.clone, range.first * kBlock, range.second * kBlock);
    RC_ASSERT(status.ok() == (m.mode != CloneMode::kFail));
  }
  void show(std::ostream& os) const override {
    os << "Discard(block " << range.first << ", " << range.second << ")";
  }
};

// Outside rw a FLUSH fails: marks the failed commit dropped are owed forever.
struct FlushCmd : Command {
  explicit FlushCmd(const Model&) {}
  void apply(Model& m) const override {
    if (m.mode == CloneMode::kReadWrite) m.Commit();
  }
  void run(const Model& m, Sut& s) const override {
    RC_ASSERT(Flush(*s.clone).ok() == (m.mode == CloneMode::kReadWrite));
  }
  void show(std::ostream& os) const override { os << "Flush"; }
};

// A FLUSH whose commit fails writing the metadata (and, if `reload_fails`, the
// reload of the committed map too). With nothing to commit it is a plain flush.
struct FailingCommit : Command {
  bool reload_fails = *rc::gen::element(false, false, true);
  explicit FailingCommit(const Model&) {}
  bool Fails(const Model& m) const { return m.mode != CloneMode::kReadWrite || m.owed(); }
  // The marks since the last commit are dropped: their regions read from the
  // source again, and what was written there since is gone.
  void apply(Model& m) const override {
    if (!Fails(m)) return m.Commit();
    if (m.mode != CloneMode::kReadWrite) return;
    m.mode = reload_fails ? CloneMode::kFail : CloneMode::kReadOnly;
    const uint64_t per = m.blocks_per_region();
    for (uint64_t r = 0; r < m.hydrated.size(); ++r) {
      if (!m.hydrated[r] || m.committed[r]) continue;
      m.hydrated[r] = false;
      for (uint64_t b = r * per; b < std::min((r + 1) * per, m.block_count()); ++b)
        m.blocks[b] = BlockState{};
    }
  }
  void run(const Model& m, Sut& s) const override {
    if (m.mode == CloneMode::kReadWrite && m.owed()) {
      s.metadata->FailNextCommit();
      if (reload_fails) s.metadata->FailNextReload();
    }
    RC_ASSERT(Flush(*s.clone).ok() == !Fails(m));
    RC_ASSERT(s.clone->mode() == (Fails(m) && m.mode == CloneMode::kReadWrite
                                      ? (reload_fails ? CloneMode::kFail : CloneMode::kReadOnly)
                                      : m.mode));
  }
  void show(std::ostream& os) const override {
    os << "FailingCommit(reload " << (reload_fails ? "fails" : "works") << ")";
  }
};

struct CrashCmd : Command {
  explicit CrashCmd(const Model&) {}
  // After a crash each block holds its durable value or one written since;
  // where that leaves a choice the model stops predicting until a rewrite.
  void apply(Model& m) const override {
    m.mode = CloneMode::kReadWrite;
    m.hydrated = m.committed;
    for (BlockState& s : m.blocks) {
      bool single = true;
      for (int64_t v : s.since_durable) single = single && v == s.durable;
      s.value = single ? s.durable : kAnything;
      s.durable = s.value;
      s.since_durable.clear();
    }
  }
  void run(const Model& m, Sut& s) const override {
    s.Crash();
    std::vector<std::byte> data(m.block_count() * kBlock);
    RC_ASSERT(ReadAt(*s.clone, 0, std::span(data).first(m.source_size)).ok());
    for (uint64_t b = 0; b < m.block_count(); ++b) {
      const BlockState& state = m.blocks[b];
      bool allowed = s.Matches(state.durable, b, data.data() + b * kBlock);
      for (int64_t v : state.since_durable)
        allowed = allowed || s.Matches(v, b, data.data() + b * kBlock);
      RC_ASSERT(allowed);
    }
  }
  void show(std::ostream& os) const override { os << "Crash"; }
};

RC_GTEST_PROP(CloneModelTest, BehavesLikeTheModelAcrossGeometriesAndCrashes, ()) {
  Model model;
  model.region_size = *rc::gen::element<uint64_t>(4096, 8192, 16384, 65536);
  const uint64_t regions = *rc::gen::inRange<uint64_t>(1, 9);
  const uint64_t tail_blocks = *rc::gen::element<uint64_t>(0, 0, 1, model.region_size / kBlock - 1);
  model.source_size = regions * model.region_size + tail_blocks * kBlock;
  model.blocks.resize(model.source_size / kBlock);
  model.hydrated.resize((model.source_size + model.region_size - 1) / model.region_size);
  model.committed = model.hydrated;
  Sut sut(model);
  rc::state::check(model, sut,
                   rc::state::gen::execOneOfWithArgs<Read, Read, Write, Write, Write, DiscardCmd,
                                                     FlushCmd, FailingCommit, CrashCmd>());
  // Close commits what is owed; outside rw that cannot be done, and it says so.
  const CloneMode mode = sut.clone->mode();
  RC_ASSERT(sut.clone->Close().ok() == (mode == CloneMode::kReadWrite));
}

}  // namespace
}  // namespace blkclone

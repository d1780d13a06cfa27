// Model-based test of the clone engine (rapidcheck rc::state): random
// sequences of reads, writes, write-zeroes, discards, flushes and crashes, over
// random geometries (several region sizes, with and without a short last
// region), checked against a block-level model of what the clone must return.
//
// The model keeps, per 512-byte block, the value the clone must return now, the
// value that is durable, and the values written since that point. A crash
// (destination loses unflushed writes, metadata reverts to its last commit) may
// leave any of those; a discarded block may hold anything until rewritten.
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
  int64_t next_seed = 0;

  uint64_t block_count() const { return blocks.size(); }
  uint64_t blocks_per_region() const { return region_size / kBlock; }

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
    RC_ASSERT(ReadAt(*s.clone, range.first * kBlock, data).ok());
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
  void apply(Model& m) const override {
    ++m.next_seed;
    if (flags & kPreflush) {
      for (uint64_t b = 0; b < m.block_count(); ++b) m.Set(b, 1, m.blocks[b].value, true);
    }
    m.Set(range.first, range.second, zeroes ? kZeroValue : seed, (flags & kFua) != 0);
  }
  void run(const Model&, Sut& s) const override {
    const uint64_t offset = range.first * kBlock, length = range.second * kBlock;
    if (zeroes) {
      RC_ASSERT(WriteZeroes(*s.clone, offset, length, flags).ok());
      return;
    }
    std::vector<std::byte> data(length);
    for (uint64_t i = 0; i < range.second; ++i)
      FillSeeded(seed, range.first + i, data.data() + i * kBlock);
    RC_ASSERT(WriteAt(*s.clone, offset, data, flags).ok());
  }
  void show(std::ostream& os) const override {
    os << (zeroes ? "WriteZeroes" : "Write") << "(block " << range.first << ", " << range.second
       << ", seed " << seed << ", flags " << int(flags) << ")";
  }
};

struct DiscardCmd : Command {
  std::pair<uint64_t, uint64_t> range;
  explicit DiscardCmd(const Model& m) : range(GenRange(m)) {}
  void apply(Model& m) const override {
    // Only regions covered whole change (the short last one counts when the
    // discard reaches the end); their content is then unspecified.
    const uint64_t per = m.blocks_per_region();
    const uint64_t end = range.first + range.second;
    const uint64_t first_region = (range.first + per - 1) / per;
    const uint64_t end_region = end == m.block_count() ? (end + per - 1) / per : end / per;
    for (uint64_t r = first_region; r < end_region; ++r) {
      const uint64_t first = r * per;
      m.Set(first, std::min(per, m.block_count() - first), kAnything, false);
    }
  }
  void run(const Model&, Sut& s) const override {
    RC_ASSERT(Discard(*s.clone, range.first * kBlock, range.second * kBlock).ok());
  }
  void show(std::ostream& os) const override {
    os << "Discard(block " << range.first << ", " << range.second << ")";
  }
};

struct FlushCmd : Command {
  explicit FlushCmd(const Model&) {}
  void apply(Model& m) const override {
    for (uint64_t b = 0; b < m.block_count(); ++b) m.Set(b, 1, m.blocks[b].value, true);
  }
  void run(const Model&, Sut& s) const override { RC_ASSERT(Flush(*s.clone).ok()); }
  void show(std::ostream& os) const override { os << "Flush"; }
};

struct CrashCmd : Command {
  explicit CrashCmd(const Model&) {}
  // After a crash each block holds its durable value or one written since;
  // where that leaves a choice the model stops predicting until a rewrite.
  void apply(Model& m) const override {
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
  Sut sut(model);
  rc::state::check(model, sut,
                   rc::state::gen::execOneOfWithArgs<Read, Read, Write, Write, Write, DiscardCmd,
                                                     FlushCmd, CrashCmd>());
  RC_ASSERT(sut.clone->Close().ok());
}

}  // namespace
}  // namespace blkclone

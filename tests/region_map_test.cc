// Tests for blkclone::RegionMap.
//
// Model-based properties compare the map with a plain std::vector<bool> after every mutation;
// unit tests pin down edge sizes, clipping, persistence and a full 2^32-region map; the
// concurrency tests check exact counting and searches under racing threads and are meant to also
// run under ThreadSanitizer.

#include "blkclone/region_map.hpp"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <latch>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bounded_wait.hpp"

#if defined(__SANITIZE_THREAD__)
#define BLKCLONE_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BLKCLONE_UNDER_TSAN 1
#endif
#endif

namespace blkclone {
namespace {

using testing::BoundedThread;

#ifdef BLKCLONE_UNDER_TSAN
constexpr bool kUnderThreadSanitizer = true;
#else
constexpr bool kUnderThreadSanitizer = false;
#endif

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// Sizes around word and summary-level boundaries: 4096 regions fill one level-1 word and
// 262144 regions one level-2 word.
const std::vector<uint64_t> kEdgeSizes = {0,    1,    2,    63,   64,     65,     127,   128,
                                          4095, 4096, 4097, 8191, 262143, 262144, 262145};

// Reference semantics: a bit vector with linear-time queries.
class Model {
 public:
  explicit Model(uint64_t size) : bits_(size) {}

  uint64_t size() const { return bits_.size(); }
  uint64_t count() const { return count_; }
  bool IsSet(uint64_t region) const { return bits_[region]; }

  bool Set(uint64_t region) {
    if (bits_[region]) return false;
    bits_[region] = true;
    ++count_;
    return true;
  }

  uint64_t SetRange(uint64_t first, uint64_t count) {
    uint64_t added = 0;
    for (uint64_t r = first; r < size() && r - first < count; ++r) added += Set(r);
    return added;
  }

  uint64_t OrWord(uint64_t index, uint64_t bits) {
    uint64_t added = 0;
    for (uint64_t i = 0; i < 64 && index * 64 + i < size(); ++i) {
      if ((bits >> i) & 1) added += Set(index * 64 + i);
    }
    return added;
  }

  uint64_t Word(uint64_t index) const {
    uint64_t word = 0;
    for (uint64_t i = 0; i < 64 && index * 64 + i < size(); ++i) {
      word |= uint64_t{bits_[index * 64 + i]} << i;
    }
    return word;
  }

  uint64_t FindNextUnset(uint64_t from) const { return Find(from, false); }
  uint64_t FindNextSet(uint64_t from) const { return Find(from, true); }

 private:
  uint64_t Find(uint64_t from, bool value) const {
    if (from >= size()) return size();
    const auto it =
        std::find(bits_.begin() + static_cast<std::ptrdiff_t>(from), bits_.end(), value);
    return static_cast<uint64_t>(it - bits_.begin());
  }

  std::vector<bool> bits_;
  uint64_t count_ = 0;
};

// Compares the O(1) queries, plus IsSet and both searches from each probe (any value; probes
// at or past the end exercise the "from >= size()" contract).
void CheckProbes(const RegionMap& map, const Model& model, const std::vector<uint64_t>& probes) {
  RC_ASSERT(map.size() == model.size());
  RC_ASSERT(map.CountSet() == model.count());
  RC_ASSERT(map.AllSet() == (model.count() == model.size()));
  for (const uint64_t from : probes) {
    if (from < model.size()) RC_ASSERT(map.IsSet(from) == model.IsSet(from));
    RC_ASSERT(map.FindNextUnset(from) == model.FindNextUnset(from));
    RC_ASSERT(map.FindNextSet(from) == model.FindNextSet(from));
  }
}

// The fixed probes from the contract, the caller's probes and a few random positions.
void CheckAround(const RegionMap& map, const Model& model, std::vector<uint64_t> probes) {
  const uint64_t size = model.size();
  probes.insert(probes.end(), {0, size - 1, size, size + 5});
  for (int i = 0; i < 3; ++i) probes.push_back(*rc::gen::inRange<uint64_t>(0, size + 1));
  CheckProbes(map, model, probes);
}

// Compares every word, then walks both search chains over the whole map. Failures are reported
// only on mismatch because the checks run once per region.
void CheckEverything(const RegionMap& map, const Model& model) {
  const uint64_t size = model.size();
  RC_ASSERT(map.word_count() == (size + 63) / 64);
  for (uint64_t w = 0; w < map.word_count(); ++w) {
    if (map.Word(w) != model.Word(w)) RC_FAIL("Word(" + std::to_string(w) + ") differs");
  }
  // next[r][v]: the first region >= r whose bit is v, computed in one backward pass.
  std::vector<std::array<uint64_t, 2>> next(size + 1, {size, size});
  for (uint64_t r = size; r-- > 0;) {
    next[r] = next[r + 1];
    next[r][model.IsSet(r)] = r;
  }
  for (uint64_t from = 0; from < size;) {
    const uint64_t found = map.FindNextUnset(from);
    if (found != next[from][0]) RC_FAIL("FindNextUnset(" + std::to_string(from) + ") differs");
    from = found + 1;
  }
  for (uint64_t from = 0; from < size;) {
    const uint64_t found = map.FindNextSet(from);
    if (found != next[from][1]) RC_FAIL("FindNextSet(" + std::to_string(from) + ") differs");
    from = found + 1;
  }
}

// Edge sizes, small maps and maps with up to four levels.
rc::Gen<uint64_t> GenSize(uint64_t max_random) {
  return rc::gen::oneOf(rc::gen::elementOf(kEdgeSizes), rc::gen::inRange<uint64_t>(0, 5000),
                        rc::gen::inRange<uint64_t>(0, max_random + 1));
}

// Starts anywhere up to a word past the end, biased towards word boundaries.
rc::Gen<uint64_t> GenFirst(uint64_t size) {
  return rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, size + 65),
                        rc::gen::map(rc::gen::inRange<uint64_t>(0, size / 64 + 2),
                                     [](uint64_t w) { return w * 64; }));
}

// Short, word-sized, map-sized and overflowing counts.
rc::Gen<uint64_t> GenCount(uint64_t size) {
  return rc::gen::oneOf(rc::gen::inRange<uint64_t>(0, 130),
                        rc::gen::elementOf(std::vector<uint64_t>{63, 64, 65, 4096, kMax}),
                        rc::gen::inRange<uint64_t>(0, size + 130));
}

// Dense, sparse and single-bit words as well as all ones.
rc::Gen<uint64_t> GenWordBits() {
  return rc::gen::oneOf(
      rc::gen::arbitrary<uint64_t>(), rc::gen::just(kMax),
      rc::gen::map(rc::gen::inRange(0, 64), [](int bit) { return uint64_t{1} << bit; }),
      rc::gen::map(
          rc::gen::tuple(rc::gen::arbitrary<uint64_t>(), rc::gen::arbitrary<uint64_t>()),
          [](const std::tuple<uint64_t, uint64_t>& t) { return std::get<0>(t) & std::get<1>(t); }));
}

RC_GTEST_PROP(RegionMapProperty, MatchesVectorModel, ()) {
  const uint64_t size = *GenSize(300000);
  RegionMap map(size);
  Model model(size);
  CheckAround(map, model, {});
  const int op_count = *rc::gen::inRange(0, 40);
  for (int i = 0; i < op_count; ++i) {
    // Set and OrWord need an existing region; SetRange accepts any range.
    const int op = *rc::gen::inRange(0, size == 0 ? 1 : 3);
    if (op == 0) {
      const uint64_t first = *GenFirst(size);
      const uint64_t count = *GenCount(size);
      RC_LOG() << "SetRange(" << first << ", " << count << ")\n";
      RC_ASSERT(map.SetRange(first, count) == model.SetRange(first, count));
      const uint64_t end = first + std::min(count, kMax - first);
      CheckAround(map, model, {first - 1, first, end - 1, end});
    } else if (op == 1) {
      const uint64_t region = *rc::gen::inRange<uint64_t>(0, size);
      RC_LOG() << "Set(" << region << ")\n";
      RC_ASSERT(map.Set(region) == model.Set(region));
      CheckAround(map, model, {region - 1, region, region + 1});
    } else {
      const uint64_t index = *rc::gen::inRange<uint64_t>(0, map.word_count());
      const uint64_t bits = *GenWordBits();
      RC_LOG() << "OrWord(" << index << ", " << bits << ")\n";
      const uint64_t before = map.CountSet();
      map.OrWord(index, bits);
      RC_ASSERT(map.CountSet() - before == model.OrWord(index, bits));
      RC_ASSERT(map.Word(index) == model.Word(index));
      CheckAround(map, model, {index * 64, index * 64 + 63});
    }
  }
  CheckEverything(map, model);
}

// The same operations as a rapidcheck state machine, which shrinks failures to a minimal
// command sequence.
using MapCommand = rc::state::Command<Model, RegionMap>;

struct SetCommand : MapCommand {
  uint64_t region;

  explicit SetCommand(const Model& model) {
    RC_PRE(model.size() > 0);
    region = *rc::gen::inRange<uint64_t>(0, model.size());
  }
  void apply(Model& model) const override { model.Set(region); }
  void run(const Model& model, RegionMap& map) const override {
    RC_ASSERT(map.Set(region) == !model.IsSet(region));
    Model next = nextState(model);
    CheckProbes(map, next, {0, region, region + 1});
  }
  void show(std::ostream& os) const override { os << "Set(" << region << ")"; }
};

struct SetRangeCommand : MapCommand {
  uint64_t first;
  uint64_t count;

  explicit SetRangeCommand(const Model& model)
      : first(*GenFirst(model.size())), count(*GenCount(model.size())) {}
  void apply(Model& model) const override { model.SetRange(first, count); }
  void run(const Model& model, RegionMap& map) const override {
    Model next = model;
    RC_ASSERT(map.SetRange(first, count) == next.SetRange(first, count));
    CheckProbes(map, next, {0, first - 1, first, first + count, model.FindNextUnset(first)});
  }
  void show(std::ostream& os) const override { os << "SetRange(" << first << ", " << count << ")"; }
};

struct OrWordCommand : MapCommand {
  uint64_t index;
  uint64_t bits;

  explicit OrWordCommand(const Model& model) {
    RC_PRE(model.size() > 0);
    index = *rc::gen::inRange<uint64_t>(0, (model.size() + 63) / 64);
    bits = *GenWordBits();
  }
  void apply(Model& model) const override { model.OrWord(index, bits); }
  void run(const Model& model, RegionMap& map) const override {
    Model next = model;
    const uint64_t before = map.CountSet();
    map.OrWord(index, bits);
    RC_ASSERT(map.CountSet() - before == next.OrWord(index, bits));
    RC_ASSERT(map.Word(index) == next.Word(index));
    CheckProbes(map, next, {0, index * 64, index * 64 + 64});
  }
  void show(std::ostream& os) const override {
    os << "OrWord(" << index << ", 0x" << std::hex << bits << std::dec << ")";
  }
};

struct FindCommand : MapCommand {
  uint64_t from;

  explicit FindCommand(const Model& model) : from(*GenFirst(model.size())) {}
  void run(const Model& model, RegionMap& map) const override { CheckProbes(map, model, {from}); }
  void show(std::ostream& os) const override { os << "Find(" << from << ")"; }
};

RC_GTEST_PROP(RegionMapProperty, StateMachine, ()) {
  const uint64_t size = *GenSize(20000);
  RegionMap map(size);
  rc::state::check(
      Model(size), map,
      rc::state::gen::execOneOfWithArgs<SetCommand, SetRangeCommand, OrWordCommand, FindCommand>());
}

TEST(RegionMapTest, EmptyMap) {
  RegionMap map(0);
  EXPECT_EQ(map.size(), 0u);
  EXPECT_EQ(map.word_count(), 0u);
  EXPECT_EQ(map.CountSet(), 0u);
  EXPECT_TRUE(map.AllSet());
  EXPECT_EQ(map.FindNextUnset(0), 0u);
  EXPECT_EQ(map.FindNextSet(0), 0u);
  EXPECT_EQ(map.FindNextUnset(kMax), 0u);
  EXPECT_EQ(map.SetRange(0, kMax), 0u);
  EXPECT_EQ(map.CountSet(), 0u);
}

TEST(RegionMapTest, SetReturnsTrueOnlyForTheFirstCall) {
  RegionMap map(200);
  EXPECT_FALSE(map.IsSet(130));
  EXPECT_TRUE(map.Set(130));
  EXPECT_FALSE(map.Set(130));
  EXPECT_TRUE(map.IsSet(130));
  EXPECT_FALSE(map.IsSet(129));
  EXPECT_FALSE(map.IsSet(131));
  EXPECT_EQ(map.CountSet(), 1u);
  EXPECT_EQ(map.Word(2), uint64_t{1} << 2);
  EXPECT_EQ(map.FindNextSet(0), 130u);
  EXPECT_EQ(map.FindNextSet(131), 200u);
  EXPECT_EQ(map.FindNextUnset(130), 131u);
}

TEST(RegionMapTest, SetRangeClipsAndCountsOnlyNewBits) {
  RegionMap map(100);
  EXPECT_EQ(map.SetRange(10, 20), 20u);
  EXPECT_EQ(map.SetRange(0, 40), 20u);
  EXPECT_EQ(map.SetRange(50, 0), 0u);
  EXPECT_EQ(map.SetRange(100, 5), 0u);
  EXPECT_EQ(map.SetRange(kMax, kMax), 0u);
  EXPECT_EQ(map.SetRange(90, kMax), 10u);
  EXPECT_EQ(map.CountSet(), 50u);
  EXPECT_EQ(map.FindNextUnset(0), 40u);
  EXPECT_EQ(map.FindNextSet(40), 90u);
  EXPECT_EQ(map.FindNextUnset(90), 100u);
  EXPECT_FALSE(map.AllSet());
  EXPECT_EQ(map.SetRange(0, 100), 50u);
  EXPECT_TRUE(map.AllSet());
}

TEST(RegionMapTest, LastPartialWordNeverShowsBitsPastSize) {
  RegionMap map(70);
  ASSERT_EQ(map.word_count(), 2u);
  map.OrWord(1, kMax);
  EXPECT_EQ(map.Word(1), 0x3fu);
  EXPECT_EQ(map.CountSet(), 6u);
  EXPECT_EQ(map.FindNextUnset(64), 70u);
  EXPECT_EQ(map.FindNextSet(0), 64u);
  EXPECT_EQ(map.SetRange(0, 1000), 64u);
  EXPECT_EQ(map.Word(1), 0x3fu);
  EXPECT_EQ(map.CountSet(), 70u);
  EXPECT_TRUE(map.AllSet());
  EXPECT_EQ(map.FindNextUnset(0), 70u);
  EXPECT_EQ(map.FindNextSet(69), 69u);
  EXPECT_EQ(map.FindNextSet(70), 70u);
  map.OrWord(1, kMax);
  EXPECT_EQ(map.CountSet(), 70u);
}

// Leaves a single hole and checks that the summary levels lead every search to it.
TEST(RegionMapTest, FindsTheOnlyUnsetRegionAtAnyLevelDepth) {
  for (const uint64_t size : kEdgeSizes) {
    if (size == 0) continue;
    for (const uint64_t hole : {uint64_t{0}, size / 2, size / 64 * 64, size - 1}) {
      if (hole >= size) continue;
      SCOPED_TRACE(::testing::Message() << "size " << size << " hole " << hole);
      RegionMap map(size);
      EXPECT_EQ(map.SetRange(0, hole) + map.SetRange(hole + 1, size), size - 1);
      EXPECT_EQ(map.CountSet(), size - 1);
      EXPECT_FALSE(map.AllSet());
      EXPECT_EQ(map.FindNextUnset(0), hole);
      EXPECT_EQ(map.FindNextUnset(hole), hole);
      EXPECT_EQ(map.FindNextUnset(hole + 1), size);
      EXPECT_EQ(map.FindNextSet(hole), hole + 1 == size ? size : hole + 1);
      EXPECT_TRUE(map.Set(hole));
      EXPECT_TRUE(map.AllSet());
      EXPECT_EQ(map.FindNextUnset(0), size);
    }
  }
}

TEST(RegionMapTest, WordsRestoreAnIdenticalMap) {
  constexpr uint64_t kSize = 100000;
  std::mt19937_64 rng(42);
  RegionMap original(kSize);
  for (int i = 0; i < 300; ++i) original.SetRange(rng() % kSize, rng() % 400);
  original.SetRange(kSize - 10, 10);

  RegionMap restored(kSize);
  for (uint64_t w = 0; w < original.word_count(); ++w) restored.OrWord(w, original.Word(w));
  EXPECT_EQ(restored.CountSet(), original.CountSet());
  for (uint64_t w = 0; w < original.word_count(); ++w) {
    ASSERT_EQ(restored.Word(w), original.Word(w)) << "word " << w;
  }
  for (uint64_t from = 0; from < kSize; from = restored.FindNextUnset(from) + 1) {
    ASSERT_EQ(restored.FindNextUnset(from), original.FindNextUnset(from)) << "from " << from;
  }
  EXPECT_GT(original.CountSet(), 0u);
  EXPECT_FALSE(original.AllSet());
}

TEST(RegionMapTest, HugeMapSkipsHydratedStretches) {
  constexpr uint64_t kSize = uint64_t{1} << 32;
  constexpr uint64_t kChunk = uint64_t{1} << 28;
  constexpr uint64_t kHole = 3'000'000'019;
  constexpr uint64_t kLast = kSize - 1;
  if (kUnderThreadSanitizer) {
    // Single-threaded, so nothing for TSan to check, while its shadow of 512 MiB takes many GiB.
    GTEST_SKIP() << "2^32-region map under ThreadSanitizer";
  }
  RegionMap map(kSize);
  ASSERT_EQ(map.word_count(), kSize / 64);

  uint64_t added = 0;
  for (uint64_t first = 0; first < kLast; first += kChunk) {
    const uint64_t end = std::min(first + kChunk, kLast);
    if (first <= kHole && kHole < end) {
      added += map.SetRange(first, kHole - first) + map.SetRange(kHole + 1, end - kHole - 1);
    } else {
      added += map.SetRange(first, end - first);
    }
  }
  EXPECT_EQ(added, kSize - 2);
  EXPECT_EQ(map.CountSet(), kSize - 2);
  EXPECT_FALSE(map.AllSet());
  EXPECT_EQ(map.FindNextUnset(0), kHole);
  EXPECT_EQ(map.FindNextUnset(kHole + 1), kLast);
  EXPECT_EQ(map.FindNextSet(kHole), kHole + 1);
  EXPECT_EQ(map.Word(kHole / 64), ~(uint64_t{1} << (kHole % 64)));

  EXPECT_TRUE(map.Set(kHole));
  EXPECT_EQ(map.FindNextUnset(0), kLast);
  EXPECT_EQ(map.SetRange(kLast, kMax), 1u);
  EXPECT_EQ(map.CountSet(), kSize);
  EXPECT_TRUE(map.AllSet());
  EXPECT_EQ(map.FindNextUnset(0), kSize);
}

struct Op {
  bool is_range;
  uint64_t first;
  uint64_t count;
};

// A strided sweep, shared with the other threads so that many words are completed by racing
// writers, interleaved with random overlapping ranges and single regions.
std::vector<Op> MakeThreadOps(int thread, int thread_count, uint64_t size) {
  std::mt19937_64 rng(static_cast<uint64_t>(thread) + 1);
  std::vector<Op> ops;
  int step = 0;
  for (uint64_t r = static_cast<uint64_t>(thread); r < size; r += thread_count) {
    // Regions with r % 4099 == 7 are left to the random operations, so some stay unset.
    if (r % 4099 != 7) ops.push_back({false, r, 1});
    if (++step % 250 != 0) continue;
    const bool is_range = rng() % 2 == 0;
    const uint64_t first = rng() % size;
    ops.push_back({is_range, first, is_range ? 1 + rng() % 1000 : 1});
  }
  return ops;
}

TEST(RegionMapTest, ConcurrentSettersCountEachBitOnce) {
  constexpr uint64_t kSize = 1'000'000;
  constexpr int kThreads = 4;
  RegionMap map(kSize);
  std::vector<std::vector<Op>> ops;
  for (int t = 0; t < kThreads; ++t) ops.push_back(MakeThreadOps(t, kThreads, kSize));

  std::atomic<uint64_t> sum{0};
  std::atomic<int> writers_left{kThreads};
  std::latch start(kThreads + 1);
  std::deque<BoundedThread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (const Op& op : ops[static_cast<size_t>(t)]) {
        sum.fetch_add(op.is_range ? map.SetRange(op.first, op.count) : map.Set(op.first));
      }
      writers_left.fetch_sub(1);
    });
  }

  // Bits only go from 0 to 1, so a concurrent observer must see every query move one way.
  bool monotonic = true;
  int observations = 0;
  BoundedThread reader([&] {
    start.arrive_and_wait();
    uint64_t last_unset = 0, last_set = kSize, last_count = 0;
    while (writers_left.load() > 0) {
      const uint64_t count = map.CountSet();
      const uint64_t unset = map.FindNextUnset(0);
      const uint64_t set = map.FindNextSet(0);
      monotonic = monotonic && count >= last_count && unset >= last_unset && set <= last_set;
      last_count = count;
      last_unset = unset;
      last_set = set;
      ++observations;
    }
  });
  for (BoundedThread& thread : threads) thread.Join();
  reader.Join();
  EXPECT_TRUE(monotonic);
  EXPECT_GT(observations, 0);

  Model model(kSize);
  for (const std::vector<Op>& thread_ops : ops) {
    for (const Op& op : thread_ops) model.SetRange(op.first, op.count);
  }
  EXPECT_EQ(sum.load(), model.count());
  EXPECT_EQ(map.CountSet(), model.count());
  EXPECT_LT(model.count(), kSize);
  EXPECT_FALSE(map.AllSet());
  for (uint64_t w = 0; w < map.word_count(); ++w) {
    ASSERT_EQ(map.Word(w), model.Word(w)) << "word " << w;
  }
  for (uint64_t from = 0; from < kSize; from = map.FindNextUnset(from) + 1) {
    ASSERT_EQ(map.FindNextUnset(from), model.FindNextUnset(from)) << "from " << from;
  }
}

// SetRange reports the words it completes to level 1 only at the end of each 64-word group, so
// a reader following the writer keeps meeting full words whose summary bit is still 0. It must
// step over them rather than stop, and never report a region past the one that stays unset.
TEST(RegionMapTest, SearchesRacingWithAWriterSkipOnlySetRegions) {
  constexpr uint64_t kSize = uint64_t{1} << 20;
  constexpr uint64_t kHole = kSize - 1;
  constexpr uint64_t kGroup = 64 * 64;
  int overlapping = 0;
  int wrong = 0;
  // Rounds repeat until enough searches have met a partly written map, even on a busy machine.
  for (int round = 0; round < 100 && overlapping < 20000; ++round) {
    RegionMap map(kSize);
    std::atomic<bool> reading{false};
    std::atomic<bool> writing{true};
    BoundedThread writer([&] {
      while (!reading.load()) std::this_thread::yield();
      for (uint64_t first = 0; first < kHole; first += kGroup) {
        map.SetRange(first, std::min(kGroup, kHole - first));
      }
      writing.store(false);
    });
    uint64_t last = 0;
    reading.store(true);
    while (writing.load()) {
      const uint64_t found = map.FindNextUnset(0);
      // The writer goes in order, so everything before an answer must already be set.
      if (found > kHole || found < last || (found > 0 && !map.IsSet(found - 1))) ++wrong;
      last = found;
      overlapping += found != 0 && found != kHole;
    }
    writer.Join();
    ASSERT_EQ(map.FindNextUnset(0), kHole);
  }
  EXPECT_EQ(wrong, 0) << "out of " << overlapping << " searches";
}

// Loading persisted words from several threads: each thread contributes every fourth bit of
// each word, so most words are completed by whichever thread comes last.
TEST(RegionMapTest, ConcurrentOrWordKeepsCountAndSummaryExact) {
  constexpr uint64_t kSize = 1'000'000 - 3;
  constexpr int kThreads = 4;
  constexpr uint64_t kStride = 0x1111111111111111;
  RegionMap map(kSize);
  std::latch start(kThreads);
  std::deque<BoundedThread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (uint64_t w = 0; w < map.word_count(); ++w) {
        // Every 1000th word misses one bit, so the searches have something to find.
        const uint64_t hole = w % 1000 == 999 ? uint64_t{1} << (w % 64) : 0;
        map.OrWord(w, (kStride << t) & ~hole);
      }
    });
  }
  for (BoundedThread& thread : threads) thread.Join();

  Model model(kSize);
  for (uint64_t w = 0; w < map.word_count(); ++w) {
    model.OrWord(w, w % 1000 == 999 ? ~(uint64_t{1} << (w % 64)) : kMax);
  }
  EXPECT_EQ(map.CountSet(), model.count());
  EXPECT_FALSE(map.AllSet());
  EXPECT_EQ(map.Word(map.word_count() - 1), model.Word(map.word_count() - 1));
  for (uint64_t from = 0; from < kSize; from = map.FindNextUnset(from) + 1) {
    ASSERT_EQ(map.FindNextUnset(from), model.FindNextUnset(from)) << "from " << from;
  }
}


TEST(RegionMapTest, ReleaseOnlyWhenCompleteAndAnswersFromTheCountAfter) {
  RegionMap map(1000);
  map.SetRange(0, 999);
  EXPECT_FALSE(map.ReleaseIfComplete());
  EXPECT_FALSE(map.released());
  EXPECT_TRUE(map.Set(999));
  EXPECT_TRUE(map.ReleaseIfComplete());
  EXPECT_TRUE(map.released());
  EXPECT_FALSE(map.ReleaseIfComplete()) << "only once";
  EXPECT_TRUE(map.IsSet(0));
  EXPECT_TRUE(map.IsSet(999));
  EXPECT_EQ(map.CountSet(), 1000u);
  EXPECT_TRUE(map.AllSet());
  EXPECT_EQ(map.FindNextUnset(0), 1000u);
  EXPECT_EQ(map.FindNextSet(17), 17u);
  EXPECT_EQ(map.Word(0), ~uint64_t{0});
  EXPECT_EQ(map.Word(15), (uint64_t{1} << (1000 % 64)) - 1);
  EXPECT_EQ(map.SetRange(0, 1000), 0u);
  EXPECT_FALSE(map.Set(5));
}

}  // namespace
}  // namespace blkclone

// RegionMap: the in-core hydration bitmap of a clone target.
//
// One bit per region records whether the region has been copied from the source device to the
// destination. Bits only ever go from 0 to 1, which is what lets every operation be lock-free: a
// set bit can never be observed going back to 0, so readers never need to retry.
//
// On top of the region bits sits a summary hierarchy with one bit per fully-set word of the level
// below, up to a single top word. FindNextUnset walks it to jump over hydrated stretches in
// O(levels) word reads, so looking for the next region to hydrate stays cheap even on a nearly
// complete 2^32-region map.
//
// Example:
//
//   blkclone::RegionMap map(device_bytes / region_bytes);
//   map.SetRange(0, 16);                  // e.g. regions discarded on the destination
//   for (uint64_t r = map.FindNextUnset(0); r < map.size(); r = map.FindNextUnset(r + 1)) {
//     CopyRegion(r);
//     map.Set(r);                         // after the copy: IsSet(r) readers see the data
//   }
//   for (uint64_t w = 0; w < map.word_count(); ++w) Persist(w, map.Word(w));
//
// Thread safety: every method may be called concurrently from any thread without locking.
//   - Set, SetRange and OrWord OR bits in with fetch_or and count only the bits their own
//     fetch_or turned from 0 to 1, so concurrent callers on overlapping ranges never count a
//     region twice and their results add up to CountSet().
//   - Setting bits is a release operation and IsSet, Word and the Find* methods acquire: a thread
//     that observes a region as set also observes everything written before it was set.
//   - CountSet() and AllSet() are updated right after the bits, so they may briefly trail what
//     IsSet() reports while writers are running; they are exact once writers are quiescent.
//   - A summary bit is set only after the word it describes has become full. A reader racing with
//     the writer that completes a word may see a stale 0 summary bit; that only makes it scan the
//     word, never return a wrong answer, because a summary bit of 1 always means the word is full.

#ifndef BLKCLONE_REGION_MAP_HPP_
#define BLKCLONE_REGION_MAP_HPP_

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace blkclone {

class RegionMap {
 public:
  // Creates a map with every region unset; region_count may be 0. All memory is allocated here:
  // ceil(n/64) region words plus about 1/63 as many summary words (at least one per level).
  explicit RegionMap(uint64_t region_count) : size_(region_count) {
    uint64_t bits = region_count;
    uint64_t total_words = 0;
    // Level 0 always exists (with 0 words for an empty map) so the word accessors need no
    // special case; further levels are added until one word covers the level below.
    do {
      Level& level = levels_[level_count_++];
      level.offset = total_words;
      level.bits = bits;
      level.words = WordsFor(bits);
      level.last_mask = bits % kWordBits == 0 ? kAllOnes : (uint64_t{1} << (bits % kWordBits)) - 1;
      total_words += level.words;
      bits = level.words;
    } while (bits > 1);
    words_ = std::make_unique<std::atomic<uint64_t>[]>(total_words);
  }

  RegionMap(const RegionMap&) = delete;
  RegionMap& operator=(const RegionMap&) = delete;

  // Number of regions the map covers.
  uint64_t size() const { return size_; }

  // Whether `region` is hydrated. Precondition: region < size().
  bool IsSet(uint64_t region) const {
    if (Released()) return true;
    const uint64_t word = Slot(0, region / kWordBits).load(std::memory_order_acquire);
    return (word >> (region % kWordBits)) & 1;
  }

  // Marks `region` hydrated. Returns true only for the one call that changed it from 0 to 1, so
  // a caller can tell whether it owns the transition. Precondition: region < size().
  bool Set(uint64_t region) {
    if (Released()) return false;
    const uint64_t index = region / kWordBits;
    uint64_t completed = 0;
    if (OrRegionWord(index, uint64_t{1} << (region % kWordBits), completed) == 0) return false;
    MarkFull(1, index / kWordBits, completed);
    set_count_.fetch_add(1, std::memory_order_acq_rel);
    return true;
  }

  // Marks [first, first + count) hydrated, clipped to size() (first may be past the end, and
  // first + count may exceed 2^64). Returns how many regions this call changed from 0 to 1.
  uint64_t SetRange(uint64_t first, uint64_t count) {
    if (first >= size_ || Released()) return 0;
    const uint64_t end = first + std::min(count, size_ - first);
    uint64_t added = 0;
    uint64_t completed = 0;
    for (uint64_t pos = first; pos < end;) {
      const uint64_t index = pos / kWordBits;
      const uint64_t shift = pos % kWordBits;
      const uint64_t n = std::min(kWordBits - shift, end - pos);
      pos += n;
      added += OrRegionWord(index, (n == kWordBits ? kAllOnes : (uint64_t{1} << n) - 1) << shift,
                            completed);
      // Completed words reach level 1 with one fetch_or per summary word instead of one each.
      if (index % kWordBits == kWordBits - 1 || pos == end) {
        MarkFull(1, index / kWordBits, completed);
        completed = 0;
      }
    }
    if (added != 0) set_count_.fetch_add(added, std::memory_order_acq_rel);
    return added;
  }

  // First unset region >= from, or size() if there is none (including when from >= size()).
  // Costs O(levels) word reads when nothing races with the search.
  uint64_t FindNextUnset(uint64_t from) const {
    if (from >= size_ || Released()) return size_;
    uint64_t pos = from;
    size_t level = 0;
    while (true) {
      // Climb until some word has a 0 bit at or after pos; bit w + 1 one level up stands for the
      // words after word w, so the climb never revisits anything already known to be full.
      uint64_t index = pos / kWordBits;
      uint64_t zeros = ~Slot(level, index).load(std::memory_order_acquire) &
                       ValidMask(level, index) & (kAllOnes << (pos % kWordBits));
      while (zeros == 0) {
        if (++level == level_count_) return size_;
        pos = index + 1;
        if (pos >= levels_[level].bits) return size_;
        index = pos / kWordBits;
        zeros = ~Slot(level, index).load(std::memory_order_acquire) & ValidMask(level, index) &
                (kAllOnes << (pos % kWordBits));
      }
      pos = index * kWordBits + std::countr_zero(zeros);
      // Descend through the first non-full word at each level. A stale summary bit can lead to
      // a word that has meanwhile become full; the search then resumes right after it.
      while (level > 0) {
        --level;
        zeros = ~Slot(level, pos).load(std::memory_order_acquire) & ValidMask(level, pos);
        if (zeros == 0) break;
        pos = pos * kWordBits + std::countr_zero(zeros);
      }
      if (level == 0 && zeros != 0) return pos;
      pos = (pos + 1) * kWordBits;
      if (pos >= levels_[level].bits) return size_;
    }
  }

  // First set region >= from, or size() if there is none. Scans the region words linearly, so it
  // is meant for dumps and recovery rather than the I/O path.
  uint64_t FindNextSet(uint64_t from) const {
    if (from >= size_ || Released()) return std::min(from, size_);
    uint64_t index = from / kWordBits;
    uint64_t bits =
        Slot(0, index).load(std::memory_order_acquire) & (kAllOnes << (from % kWordBits));
    while (bits == 0) {
      if (++index == levels_[0].words) return size_;
      bits = Slot(0, index).load(std::memory_order_acquire);
    }
    return index * kWordBits + std::countr_zero(bits);
  }

  // Number of hydrated regions, in O(1).
  uint64_t CountSet() const { return set_count_.load(std::memory_order_acquire); }

  // Whether every region is hydrated, in O(1). True for an empty map.
  bool AllSet() const { return CountSet() == size_; }

  // Number of 64-bit words holding the region bits, i.e. ceil(size() / 64).
  uint64_t word_count() const { return levels_[0].words; }

  // Region word `index` (bit i is region 64 * index + i), for persisting the map. Bits past
  // size() are always 0. Precondition: index < word_count().
  uint64_t Word(uint64_t index) const {
    return Released() ? ValidMask(0, index) : Slot(0, index).load(std::memory_order_acquire);
  }

  // ORs a persisted word back in; bits past size() are ignored so a stale or corrupt tail cannot
  // inflate CountSet(). Precondition: index < word_count().
  void OrWord(uint64_t index, uint64_t bits) {
    if (Released()) return;
    uint64_t completed = 0;
    const uint64_t added = OrRegionWord(index, bits & ValidMask(0, index), completed);
    MarkFull(1, index / kWordBits, completed);
    if (added != 0) set_count_.fetch_add(added, std::memory_order_acq_rel);
  }

  // Once every region is set, frees the words: the map then answers from its
  // count alone (status stays right) and costs a few bytes. Returns whether it
  // did. Precondition: no other thread is using the map during the call.
  bool ReleaseIfComplete() {
    if (!AllSet() || Released()) return false;
    words_.reset();
    released_.store(true, std::memory_order_release);
    return true;
  }

  // Whether ReleaseIfComplete has freed the words.
  bool released() const { return Released(); }

 private:
  static constexpr uint64_t kWordBits = 64;
  static constexpr uint64_t kAllOnes = ~uint64_t{0};
  // Each level shrinks the bit count 64-fold, so 2^64 regions need 11 levels including level 0.
  static constexpr size_t kMaxLevels = 11;

  static_assert(std::atomic<uint64_t>::is_always_lock_free);

  struct Level {
    uint64_t offset = 0;     // First word of the level in words_.
    uint64_t bits = 0;       // Regions at level 0, else the word count of the level below.
    uint64_t words = 0;      // ceil(bits / 64).
    uint64_t last_mask = 0;  // Meaningful bits of the level's last word.
  };

  // Written so that counts near 2^64 cannot overflow.
  static constexpr uint64_t WordsFor(uint64_t bits) {
    return bits / kWordBits + (bits % kWordBits != 0);
  }

  std::atomic<uint64_t>& Slot(size_t level, uint64_t index) const {
    return words_[levels_[level].offset + index];
  }

  uint64_t ValidMask(size_t level, uint64_t index) const {
    const Level& l = levels_[level];
    return index + 1 == l.words ? l.last_mask : kAllOnes;
  }

  // ORs `bits` (within ValidMask) into region word `index` and returns how many of them this
  // call changed from 0 to 1. Exactly one fetch_or sees a word go from not full to full; that
  // caller alone adds the word's level-1 bit to `completed` and must pass it on to MarkFull.
  uint64_t OrRegionWord(uint64_t index, uint64_t bits, uint64_t& completed) {
    std::atomic<uint64_t>& word = Slot(0, index);
    // Skipping the read-modify-write for hydrated regions keeps their cache line shared.
    if ((word.load(std::memory_order_acquire) & bits) == bits) return 0;
    const uint64_t old = word.fetch_or(bits, std::memory_order_acq_rel);
    const uint64_t full = ValidMask(0, index);
    if (old != full && (old | bits) == full) completed |= uint64_t{1} << (index % kWordBits);
    return std::popcount(bits & ~old);
  }

  // Records that the words of `level - 1` named by `bits` (bits of word `index`) are full, and
  // carries completions further up. Since only the completing caller gets here, each summary bit
  // is written once, and only after the word it describes is full.
  void MarkFull(size_t level, uint64_t index, uint64_t bits) {
    while (bits != 0 && level < level_count_) {
      const uint64_t old = Slot(level, index).fetch_or(bits, std::memory_order_acq_rel);
      const uint64_t full = ValidMask(level, index);
      bits = old != full && (old | bits) == full ? uint64_t{1} << (index % kWordBits) : 0;
      index /= kWordBits;
      ++level;
    }
  }

  bool Released() const { return released_.load(std::memory_order_acquire); }

  uint64_t size_;
  std::atomic<bool> released_{false};
  std::array<Level, kMaxLevels> levels_{};
  size_t level_count_ = 0;
  // All levels back to back: region words first, then each summary level.
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  std::atomic<uint64_t> set_count_{0};
};

}  // namespace blkclone

#endif  // BLKCLONE_REGION_MAP_HPP_

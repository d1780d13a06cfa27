// Check, ClearNeedsCheck and the dumps: read-only passes over the superblocks
// and the bitmap that apply the slot rules of metadata_format.hpp and report
// what they find instead of stopping at it.
#include "blkclone/metadata_check.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/metadata_format.hpp"
#include "blkclone/internal/metadata_io.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "json_text.hpp"

namespace blkclone {
namespace {

using internal::BitmapBlockView;
using internal::kNoSlot;
using internal::kWordsPerBitmapBlock;
using internal::SlotKind;

// A report lists this many findings of each kind and counts the rest, so that
// a device full of garbage gives a readable report.
constexpr size_t kMaxListed = 1000;

class Findings {
 public:
  void Problem(std::string text) { Add(report_.problems, problems_beyond_, std::move(text)); }
  void Note(std::string text) { Add(report_.notes, notes_beyond_, std::move(text)); }
  CheckReport& report() { return report_; }

  CheckReport Finish() && {
    report_.ok = report_.problems.empty();
    if (problems_beyond_ > 0) report_.problems.push_back(More(problems_beyond_, "problems"));
    if (notes_beyond_ > 0) report_.notes.push_back(More(notes_beyond_, "notes"));
    return std::move(report_);
  }

 private:
  static void Add(std::vector<std::string>& list, uint64_t& beyond, std::string text) {
    if (list.size() < kMaxListed) {
      list.push_back(std::move(text));
    } else {
      ++beyond;
    }
  }
  static std::string More(uint64_t count, absl::string_view what) {
    return absl::StrCat("... and ", count, " more ", what);
  }

  CheckReport report_;
  uint64_t problems_beyond_ = 0;
  uint64_t notes_beyond_ = 0;
};

// Bits of region word `word` (of the whole map) that stand for regions.
uint64_t RegionMask(uint64_t region_count, uint64_t word) {
  const uint64_t tail = region_count % 64;
  return word == region_count / 64 && tail != 0 ? (uint64_t{1} << tail) - 1 : ~uint64_t{0};
}

// Reports on superblock slot `s`, which the current header was not read from.
void CheckOtherSuperblock(const StoredHeader& header, int s,
                          const absl::StatusOr<StoredHeader>& slot, bool checksum_matches,
                          Findings& findings) {
  const int copies = header.layout.copies;
  const bool twin = internal::PairOf(s, copies) == internal::PairOf(header.superblock_slot, copies);
  const std::string current = absl::StrCat("slot ", header.superblock_slot);
  if (slot.ok()) {
    if (slot->uuid != header.uuid) {
      findings.Problem(absl::StrCat("superblock slot ", s, " belongs to other metadata (uuid ",
                                    slot->uuid.ToString(), ", not ", header.uuid.ToString(), ")"));
    } else if (slot->format_version != header.format_version) {
      findings.Note(absl::StrCat("superblock slot ", s, " holds a format ", slot->format_version,
                                 " superblock left by an upgrade; the next commit overwrites it"));
    } else if (twin && slot->generation != header.generation) {
      findings.Note(absl::StrCat("superblock slot ", s, " holds generation ", slot->generation,
                                 ", not its twin's ", header.generation,
                                 " (an interrupted commit); a read-write open rewrites the pair"));
    }
    return;
  }
  const absl::Status& status = slot.status();
  if (absl::IsNotFound(status)) {
    findings.Note(absl::StrCat(status.message(),
                               " (an interrupted format, or wiped); the next "
                               "commit rewrites it"));
  } else if (copies > 1) {
    // Every committed generation has two copies, so one bad slot never costs it.
    findings.Note(absl::StrCat(
        status.message(),
        twin ? absl::StrCat("; the committed superblock is intact in its twin, ", current,
                            ", and a read-write open rewrites the pair")
             : "; an older copy or a torn write by an interrupted commit; the next commit "
               "overwrites it"));
  } else if (absl::IsDataLoss(status) && !checksum_matches) {
    // A torn write of the slot being replaced looks exactly like this.
    findings.Note(absl::StrCat(status.message(),
                               ": a torn write by an interrupted commit or "
                               "damage to the older copy; the next commit rewrites it"));
  } else {
    findings.Problem(std::string(status.message()));
  }
}

// The current header, after reporting on every superblock slot.
std::optional<StoredHeader> CheckSuperblocks(AnyBlockDevice& device, Findings& findings) {
  absl::StatusOr<internal::SuperblockBlocks> raw = internal::ReadSuperblockBlocks(device);
  if (!raw.ok()) {
    findings.Problem(std::string(raw.status().message()));
    return std::nullopt;
  }
  const uint64_t size = device.info().size;
  std::vector<absl::StatusOr<StoredHeader>> slots;
  for (int s = 0; s < raw->count; ++s)
    slots.push_back(internal::DecodeSuperblock(raw->buffer.block(s), s, size));
  absl::StatusOr<StoredHeader> header = internal::ChooseSuperblock(slots);
  if (!header.ok()) {
    findings.Problem(std::string(header.status().message()));
    return std::nullopt;
  }
  const int count = std::min(internal::SuperblockSlots(header->format_version), raw->count);
  const int current = header->superblock_slot;
  for (int s = 0; s < count; ++s) {
    if (s == current) continue;
    CheckOtherSuperblock(*header, s, slots[s], internal::ChecksumMatches(raw->buffer.block(s)),
                         findings);
    // Both copies of a pair are written from one buffer.
    const int copies = header->layout.copies;
    if (internal::PairOf(s, copies) == internal::PairOf(current, copies) && slots[s].ok() &&
        slots[s]->generation == header->generation &&
        !std::ranges::equal(raw->buffer.block(s), raw->buffer.block(current)))
      findings.Note(absl::StrCat("superblock slot ", s, " differs from its twin, slot ", current,
                                 ", of the same generation; a later commit overwrites it"));
  }
  if (header->needs_check)
    findings.Note("needs_check is set: read-write opens are refused until it is cleared");
  if (header->format_version < internal::kFormatVersion) {
    const absl::StatusOr<MetadataLayout> upgrade = internal::UpgradeLayout(*header, size);
    findings.Note(absl::StrCat(
        "metadata format ", header->format_version, ", whose committed state has one copy: ",
        upgrade.ok()
            ? absl::StrCat("a read-write open upgrades it to format ", internal::kFormatVersion)
            : absl::StrCat("it stays so, as ", upgrade.status().message())));
  }
  return *header;
}

// Reports on every bitmap block and counts the hydrated regions.
void CheckBitmap(AnyBlockDevice& device, const StoredHeader& header, Findings& findings) {
  const uint64_t regions = header.geometry.region_count;
  const absl::Status status =
      internal::ForEachBitmapBlock(device, header, [&](const BitmapBlockView& view) {
        const internal::BitmapChoice& choice = view.choice;
        if (!choice.damage.empty()) {
          findings.Problem(internal::DescribeDamage(header, view));
          return absl::OkStatus();
        }
        if (choice.suspect_slot != kNoSlot) findings.Note(internal::DescribeSuspect(header, view));
        for (int s = 0; s < view.count; ++s) {
          // Copies of one version are written from one buffer.
          if (s != choice.slot && view.kinds[s].kind == SlotKind::kValid &&
              choice.slot != kNoSlot &&
              view.kinds[s].generation == view.kinds[choice.slot].generation &&
              std::memcmp(view.slots[s], view.slots[choice.slot], kMetadataBlockSize) != 0)
            findings.Note(absl::StrCat(internal::DescribeSlot(header, view.index, s),
                                       ": differs from slot ",
                                       internal::SlotName(choice.slot, header.layout.copies),
                                       " of the same generation; a later commit of the block "
                                       "overwrites it"));
        }
        for (int s = 0; s < view.count; ++s) {
          if (s == choice.slot || s == choice.suspect_slot) continue;
          const internal::BitmapSlot& slot = view.kinds[s];
          if (slot.kind != SlotKind::kValid && slot.kind != SlotKind::kDamaged) continue;
          if (slot.generation > header.generation) {
            findings.Note(absl::StrCat(internal::DescribeSlot(header, view.index, s),
                                       ": holds generation ", slot.generation,
                                       ", newer than the superblock's ", header.generation,
                                       " (an interrupted commit); the next commit overwrites it"));
          } else if (slot.kind == SlotKind::kDamaged) {
            findings.Note(absl::StrCat(internal::DescribeSlot(header, view.index, s),
                                       ": an older copy fails its checksum (a torn write or "
                                       "damage); the next commit overwrites it"));
          }
        }
        if (choice.slot == kNoSlot) return absl::OkStatus();
        const uint64_t words = internal::WordsInBlock(regions, view.index);
        bool stray = false;
        for (uint64_t w = 0; w < kWordsPerBitmapBlock; ++w) {
          const uint64_t word = view.Word(w);
          const uint64_t mask =
              w < words ? RegionMask(regions, view.index * kWordsPerBitmapBlock + w) : 0;
          stray |= (word & ~mask) != 0;
          findings.report().hydrated_regions += std::popcount(word & mask);
        }
        if (stray)
          findings.Problem(absl::StrCat(internal::DescribeSlot(header, view.index, choice.slot),
                                        ": bits set past the last region (", regions - 1, ")"));
        return absl::OkStatus();
      });
  if (!status.ok()) findings.Problem(absl::StrCat("reading the bitmap: ", status.message()));
}

// The last committed state, as the dumps print it.
struct Committed {
  StoredHeader header;
  MetadataUsage usage;
  uint64_t hydrated = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [first, last], merged

  void AddRun(uint64_t first, uint64_t count) {
    hydrated += count;
    if (!ranges.empty() && ranges.back().second + 1 == first) {
      ranges.back().second += count;
    } else {
      ranges.emplace_back(first, first + count - 1);
    }
  }
};

absl::StatusOr<Committed> ReadCommitted(AnyBlockDevice& device) {
  Committed c;
  BLKCLONE_ASSIGN_OR_RETURN(c.header, PersistentMetadata::ReadHeader(device));
  const uint64_t regions = c.header.geometry.region_count;
  uint64_t used_slots = 0;
  BLKCLONE_RETURN_IF_ERROR(
      internal::ForEachBitmapBlock(device, c.header, [&](const BitmapBlockView& view) {
        if (!view.choice.damage.empty())
          return absl::DataLossError(internal::DescribeDamage(c.header, view));
        for (int s = 0; s < view.count; ++s) used_slots += view.kinds[s].kind != SlotKind::kBlank;
        const uint64_t words = internal::WordsInBlock(regions, view.index);
        for (uint64_t w = 0; w < words; ++w) {
          const uint64_t index = view.index * kWordsPerBitmapBlock + w;
          const uint64_t word = view.Word(w) & RegionMask(regions, index);
          // Runs of ones, lowest first; shifting brings zeroes in at the top.
          for (int bit = 0; bit < 64 && (word >> bit) != 0;) {
            bit += std::countr_zero(word >> bit);
            const int ones = std::countr_one(word >> bit);
            c.AddRun(index * 64 + bit, ones);
            bit += ones;
          }
        }
        return absl::OkStatus();
      }));
  c.usage =
      MetadataUsage{.block_size = kMetadataBlockSize,
                    .used_blocks = internal::SuperblockSlots(c.header.format_version) + used_slots,
                    .total_blocks = device.info().size / kMetadataBlockSize};
  return c;
}

const char* YesNo(bool value) { return value ? "yes" : "no"; }

}  // namespace

CheckReport Check(AnyBlockDevice& device) {
  Findings findings;
  if (std::optional<StoredHeader> header = CheckSuperblocks(device, findings)) {
    findings.report().header = header;
    CheckBitmap(device, *header, findings);
  }
  return std::move(findings).Finish();
}

absl::Status ClearNeedsCheck(AnyBlockDevice& device) {
  const CheckReport report = Check(device);
  if (!report.ok)
    return absl::FailedPreconditionError(
        absl::StrCat("not clearing needs_check: the metadata has ", report.problems.size(),
                     " problem(s), the first: ", report.problems.front()));
  if (!report.header->needs_check) return absl::OkStatus();
  return Repair(device).status();
}

absl::StatusOr<CheckReport> Repair(AnyBlockDevice& device) {
  CheckReport report = Check(device);
  if (!report.header)
    return absl::DataLossError(absl::StrCat("cannot repair: ", report.problems.front()));
  BLKCLONE_RETURN_IF_ERROR(PersistentMetadata::Open(AnyBlockDevice::Borrow(device),
                                                    report.header->geometry,
                                                    {.format_if_blank = false, .repair = true})
                               .status());
  return report;
}

absl::StatusOr<std::string> DumpText(AnyBlockDevice& device) {
  BLKCLONE_ASSIGN_OR_RETURN(const Committed c, ReadCommitted(device));
  const StoredHeader& h = c.header;
  std::string text = absl::StrCat(
      "format version: ", h.format_version, "\nuuid: ", h.uuid.ToString(),
      "\ngeneration: ", h.generation, " (superblock slot ", h.superblock_slot, ")",
      "\nregion size: ", h.geometry.region_size, "\nregion count: ", h.geometry.region_count,
      "\nsource size: ", h.geometry.source_size, "\ndestination size: ", h.geometry.dest_size,
      "\ncompat features: 0x", absl::Hex(h.compat_features), "\nincompat features: 0x",
      absl::Hex(h.incompat_features), "\nfinished: ", YesNo(h.finished()),
      "\nneeds check: ", YesNo(h.needs_check), "\nmetadata blocks: ", c.usage.used_blocks, "/",
      c.usage.total_blocks, " used, ", c.usage.block_size, " bytes each",
      "\nhydrated regions: ", c.hydrated, "/", h.geometry.region_count, "\nhydrated ranges:\n");
  for (const auto& [first, last] : c.ranges)
    absl::StrAppend(&text, "  [", first, ", ", last, "]\n");
  return text;
}

absl::StatusOr<std::string> DumpJson(AnyBlockDevice& device) {
  BLKCLONE_ASSIGN_OR_RETURN(const Committed c, ReadCommitted(device));
  const StoredHeader& h = c.header;
  nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
  for (const auto& [first, last] : c.ranges) ranges.push_back({first, last});
  const nlohmann::ordered_json json = {{"format_version", h.format_version},
                                       {"uuid", h.uuid.ToString()},
                                       {"generation", h.generation},
                                       {"superblock_slot", h.superblock_slot},
                                       {"geometry",
                                        {{"region_size", h.geometry.region_size},
                                         {"region_count", h.geometry.region_count},
                                         {"source_size", h.geometry.source_size},
                                         {"dest_size", h.geometry.dest_size}}},
                                       {"compat_features", h.compat_features},
                                       {"incompat_features", h.incompat_features},
                                       {"finished", h.finished()},
                                       {"needs_check", h.needs_check},
                                       {"usage",
                                        {{"block_size", c.usage.block_size},
                                         {"used_blocks", c.usage.used_blocks},
                                         {"total_blocks", c.usage.total_blocks}}},
                                       {"hydrated_regions", c.hydrated},
                                       {"hydrated_ranges", std::move(ranges)}};
  return internal::JsonText(json);
}

}  // namespace blkclone

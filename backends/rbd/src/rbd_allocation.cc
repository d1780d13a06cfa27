// An RBD image's holes and data through rbd_diff_iterate2.
#include "rbd_allocation.hpp"

#include <algorithm>
#include <utility>

#include "blkclone/extents.hpp"

namespace blkclone::internal {
namespace {

// What rbd_diff_iterate2 reported as data, widened to whole blocks and
// clipped to the range asked for.
struct DataRanges {
  uint64_t offset, end, block;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end)
};

int OnDiff(uint64_t offset, size_t length, int exists, void* arg) {
  if (exists == 0) return 0;  // removed since the start: a hole
  DataRanges& data = *static_cast<DataRanges*>(arg);
  const uint64_t begin = std::max(offset / data.block * data.block, data.offset);
  const uint64_t end =
      std::min((offset + length + data.block - 1) / data.block * data.block, data.end);
  if (begin < end) data.ranges.emplace_back(begin, end);
  return 0;
}

// Whether the object map can answer for whole objects: only fast-diff keeps
// it exact enough, and a map flagged invalid (a crashed writer) is not.
int CanUseObjectMap(rbd_image_t image, bool& whole_object) {
  uint64_t features = 0, flags = 0;
  if (const int r = rbd_get_features(image, &features); r < 0) return r;
  if (const int r = rbd_get_flags(image, &flags); r < 0) return r;
  whole_object = (features & RBD_FEATURE_FAST_DIFF) != 0 &&
                 (flags & (RBD_FLAG_OBJECT_MAP_INVALID | RBD_FLAG_FAST_DIFF_INVALID)) == 0;
  return 0;
}

}  // namespace

int DescribeImageAllocation(rbd_image_t image, uint64_t offset, uint64_t length, uint64_t block,
                            std::vector<Extent>& extents) {
  extents.clear();
  bool whole_object = false;
  if (const int r = CanUseObjectMap(image, whole_object); r < 0) return r;
  DataRanges data{.offset = offset, .end = offset + length, .block = block, .ranges = {}};
  if (const int r = rbd_diff_iterate2(image, /*fromsnapname=*/nullptr, offset, length,
                                      /*include_parent=*/1, whole_object ? 1 : 0, &OnDiff, &data);
      r < 0)
    return r;
  // librbd reports object by object, which striping may put out of order.
  std::sort(data.ranges.begin(), data.ranges.end());
  uint64_t described = offset;  // everything before it is in `extents`
  for (auto [begin, end] : data.ranges) {
    begin = std::max(begin, described);
    if (end <= begin) continue;
    AppendExtent(extents, described, begin - described, /*hole=*/true);
    AppendExtent(extents, begin, end - begin, /*hole=*/false);
    described = end;
  }
  AppendExtent(extents, described, data.end - described, /*hole=*/true);
  return 0;
}

}  // namespace blkclone::internal

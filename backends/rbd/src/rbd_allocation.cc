// An RBD image's holes and data through rbd_diff_iterate2.
#include "rbd_allocation.hpp"

#include <algorithm>

#include "blkclone/extents.hpp"

namespace blkclone::internal {
namespace {

// Collects what rbd_diff_iterate2 reports as data.
int OnDiff(uint64_t offset, size_t length, int exists, void* arg) {
  if (exists == 0) return 0;  // removed since the start: a hole
  static_cast<std::vector<Extent>*>(arg)->push_back({.offset = offset, .length = length});
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
  bool whole_object = false;
  if (const int r = CanUseObjectMap(image, whole_object); r < 0) return r;
  std::vector<Extent> data;
  if (const int r = rbd_diff_iterate2(image, /*fromsnapname=*/nullptr, offset, length,
                                      /*include_parent=*/1, whole_object ? 1 : 0, &OnDiff, &data);
      r < 0)
    return r;
  // librbd reports object by object, which striping may put out of order.
  std::sort(data.begin(), data.end(),
            [](const Extent& a, const Extent& b) { return a.offset < b.offset; });
  extents = RoundExtents(data, offset, length, block);
  return 0;
}

}  // namespace blkclone::internal

// Where an RBD image's data is, from rbd_diff_iterate2 since the image's
// creation (its parent's data included): the kBlockStatus answer of RbdDevice.
#pragma once

#include <rbd/librbd.h>

#include <cstdint>
#include <vector>

#include "blkclone/request.hpp"

namespace blkclone::internal {

// Replaces `extents` with the allocation of [offset, offset + length) of the
// open image (or snapshot), in whole `block`s: a block holding any data is
// data. Whole objects when the image has fast-diff and a valid object map
// (one read of the map), else what each object holds. Blocks on the cluster:
// never call it from Submit. Returns 0 or -errno, as librbd does.
int DescribeImageAllocation(rbd_image_t image, uint64_t offset, uint64_t length, uint64_t block,
                            std::vector<Extent>& extents);

}  // namespace blkclone::internal

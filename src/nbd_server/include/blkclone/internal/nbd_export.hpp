// NbdExport: what the server tells NBD clients about the device it serves (size,
// transmission flags, block sizes, metadata contexts), the rules their requests
// are checked against and the hooks that answer for a clone, derived once from
// the device's DeviceInfo and the server options.
//
//   BLKCLONE_ASSIGN_OR_RETURN(internal::NbdExport spec,
//                             internal::MakeNbdExport(device.info(), options));
//   bool can_trim = spec.transmission_flags & internal::nbd::kFlagSendTrim;
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/device_info.hpp"
#include "blkclone/internal/nbd_meta_context.hpp"
#include "blkclone/nbd_server.hpp"

namespace blkclone::internal {

struct NbdExport {
  std::string name;
  std::string description;
  uint64_t size = 0;
  uint16_t transmission_flags = 0;
  // NBD_INFO_BLOCK_SIZE: requests must be aligned to the minimum; READ and
  // WRITE payloads may not exceed max_payload.
  uint32_t min_block_size = 1;
  uint32_t preferred_block_size = 4096;
  uint32_t max_payload = 0;
  // Data buffers handed to the device are aligned to this.
  uint32_t buffer_alignment = 1;
  // The device's rules as ValidateRequest applies them to requests before any
  // buffer exists: read-only if the export is, any buffer address acceptable,
  // block status accepted (the device's caps.block_status says whether the
  // device answers it, or the export answers "all data" itself).
  DeviceInfo rules;
  // The metadata contexts clients may select, and the most descriptors one
  // block status chunk carries: together, a reply holds at most
  // max_in_flight_bytes (a client asks again for the rest).
  std::vector<NbdContext> contexts;
  uint32_t max_status_descriptors = 1;
  // NbdServerOptions' hooks.
  NbdDescribeHydration describe_hydration;
  NbdHydrateRange hydrate_range;
};

// Fails with kInvalidArgument when the device cannot be described to NBD
// clients (a logical block size that is not a power of two up to 64 KiB) or an
// option is out of range (name or description over 4096 bytes, limits of 0).
[[nodiscard]] absl::StatusOr<NbdExport> MakeNbdExport(const DeviceInfo& device,
                                                      const NbdServerOptions& options);

}  // namespace blkclone::internal

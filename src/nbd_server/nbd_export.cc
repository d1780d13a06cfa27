// How a device and the server options become what NBD clients are told.
#include "blkclone/internal/nbd_export.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/nbd_protocol.hpp"

namespace blkclone::internal {
namespace {

// Descriptors in one block status chunk, at most: 1 MiB of them.
constexpr uint64_t kMaxStatusDescriptors = 128 << 10;

}  // namespace

absl::StatusOr<NbdExport> MakeNbdExport(const DeviceInfo& device, const NbdServerOptions& options) {
  const uint32_t block = device.logical_block_size;
  if (!std::has_single_bit(block) || block > nbd::kMaxMinimumBlockSize)
    return absl::InvalidArgumentError(absl::StrCat("NBD cannot export a logical block size of ",
                                                   block, " bytes (a power of two up to 64 KiB)"));
  if (options.export_name.size() > nbd::kMaxString || options.description.size() > nbd::kMaxString)
    return absl::InvalidArgumentError("NBD export name and description are limited to 4096 bytes");
  if (options.max_connections <= 0 || options.max_in_flight_requests == 0)
    return absl::InvalidArgumentError(
        "max_connections and max_in_flight_requests must be positive");

  // The largest READ or WRITE: what the device takes in one request, what a
  // connection may buffer, and what every client handles.
  uint64_t max_payload = std::min<uint64_t>(nbd::kMaxPayload, options.max_in_flight_bytes);
  if (device.max_transfer != 0) max_payload = std::min(max_payload, device.max_transfer);
  max_payload = max_payload / block * block;
  if (max_payload == 0)
    return absl::InvalidArgumentError(
        absl::StrCat("max_in_flight_bytes and the device's max_transfer must hold one block of ",
                     block, " bytes"));

  NbdExport spec;
  spec.name = options.export_name;
  spec.description = options.description;
  spec.size = device.size;
  spec.min_block_size = block;
  // A power of two within [minimum, maximum], 4 KiB where the device allows.
  spec.preferred_block_size =
      std::max(block, std::min<uint32_t>(4096, std::bit_floor(static_cast<uint32_t>(max_payload))));
  spec.max_payload = static_cast<uint32_t>(max_payload);
  spec.buffer_alignment = std::max<uint32_t>(device.memory_alignment, alignof(std::max_align_t));
  spec.rules = device;
  spec.rules.memory_alignment = 1;
  const bool read_only = options.read_only || device.caps.read_only;
  spec.rules.caps.read_only = read_only;
  spec.rules.caps.block_status = true;
  spec.contexts = {NbdContext::kAllocation};
  if (options.describe_hydration) spec.contexts.push_back(NbdContext::kHydration);
  spec.max_status_descriptors = static_cast<uint32_t>(std::clamp<uint64_t>(
      options.max_in_flight_bytes / (nbd::kStatusDescriptorSize * spec.contexts.size()), 1,
      kMaxStatusDescriptors));
  spec.describe_hydration = options.describe_hydration;
  spec.hydrate_range = options.hydrate_range;

  // Only what the device does: a client may rely on every flag it sees. FLUSH
  // and FUA are always honest, since every device accepts both; so is CACHE,
  // which the protocol lets succeed having done nothing.
  spec.transmission_flags =
      nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua | nbd::kFlagSendCache;
  if (read_only) {
    spec.transmission_flags |= nbd::kFlagReadOnly;
  } else {
    if (device.caps.discard) spec.transmission_flags |= nbd::kFlagSendTrim;
    if (device.caps.write_zeroes) spec.transmission_flags |= nbd::kFlagSendWriteZeroes;
  }
  if (options.multi_conn) spec.transmission_flags |= nbd::kFlagCanMultiConn;
  return spec;
}

}  // namespace blkclone::internal

// NbdDevice: a BlockDevice over a remote NBD export, through libnbd's
// asynchronous API; the usual source of a clone (a backup served over NBD).
//
// Open takes nbd://host[:port]/export and nbd+unix:///export?socket=PATH URIs
// (and the TLS forms where libnbd has TLS). Structured replies are requested.
// The device is read-only unless NbdOptions::writable; then flush, FUA, discard
// and write-zeroes follow the server's flags (FUA is emulated with a flush on a
// server without it). The server's block sizes become the DeviceInfo:
// logical_block_size is its minimum (at least 512), max_transfer its maximum
// (32 MiB when it names none); requests are never split here, the engine
// splits by max_transfer.
//
// Threading: one thread per connection runs a poll(2) loop over the libnbd
// socket and an eventfd; Submit queues the request and wakes the least busy
// connection. Several connections (max_connections) only when the server
// advertises multi-conn. Completions run on the connection threads, or inside
// Submit when the request is invalid or cannot be sent.
//
// Faults: a lost connection is reconnected (reconnect_attempts, with backoff),
// and its requests are sent again, up to max_request_retries times each. A
// request not done within request_timeout fails with kDeadlineExceeded; one
// past it on the wire resets its connection. A server error fails that request
// with ErrnoStatus naming the op, offset and length; retrying is the
// scheduler's job. Once every connection is down, requests fail at once with
// kUnavailable, and each new one asks for another round of attempts, so the
// device recovers when the server returns. A writable device cannot tell a
// dropped connection from a server restart that lost its write cache: flushes
// covering writes not yet flushed at a loss fail with kDataLoss. The
// destructor completes every request (kCancelled for what was not done) and
// joins its threads.
//
//   BLKCLONE_ASSIGN_OR_RETURN(auto source,
//                             blkclone::NbdDevice::Open("nbd://backup:10809/disk0", {}));
//   std::vector<std::byte> block(source->info().logical_block_size);
//   BLKCLONE_RETURN_IF_ERROR(blkclone::ReadAt(*source, 0, block));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "blkclone/block_device.hpp"
#include "blkclone/internal/nbd_client_command.hpp"
#include "blkclone/internal/nbd_durability.hpp"
#include "blkclone/nbd_options.hpp"

namespace blkclone {
namespace internal {
class NbdClientConnection;
class NbdDispatcher;
}  // namespace internal

class NbdDevice {
 public:
  // Connects (all connections at once) and describes the export. Errors name
  // the URI: kInvalidArgument for a malformed URI, bad options or an export
  // whose size or block sizes do not fit; kNotFound for a missing socket or
  // export; kUnavailable when nothing listens; kDeadlineExceeded after
  // connect_timeout; kFailedPrecondition for `writable` on a read-only export.
  static absl::StatusOr<std::unique_ptr<NbdDevice>> Open(const std::string& uri,
                                                         const NbdOptions& options);
  // Fails what is queued or in flight with kCancelled, then joins the threads.
  ~NbdDevice();
  NbdDevice(const NbdDevice&) = delete;
  NbdDevice& operator=(const NbdDevice&) = delete;

  const DeviceInfo& info() const { return info_; }
  void Submit(Request& request) noexcept;

  const std::string& uri() const { return uri_; }
  // The export as the server described it (e.g. its preferred block size).
  const NbdExportInfo& export_info() const { return export_info_; }
  NbdStats stats() const;

 private:
  NbdDevice(std::string uri, const NbdExportInfo& export_info, const DeviceInfo& info,
            std::unique_ptr<internal::NbdDispatcher> dispatcher);

  const std::string uri_;
  const NbdExportInfo export_info_;
  const DeviceInfo info_;
  const internal::NbdFeatures features_;
  internal::NbdDurability durability_;  // shared by the connections, which it outlives
  std::unique_ptr<internal::NbdDispatcher> dispatcher_;
  std::vector<std::unique_ptr<internal::NbdClientConnection>> connections_;
};

static_assert(BlockDevice<NbdDevice>);

}  // namespace blkclone

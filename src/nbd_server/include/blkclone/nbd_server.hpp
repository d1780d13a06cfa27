// NbdServer: serves any BlockDevice over the Network Block Device protocol, so
// that other programs (qemu, nbdcopy, nbd-client, fio) can use it, for example a
// clone, as a disk.
//
// The server speaks fixed newstyle NBD over a Unix socket or TCP (loopback by
// default), with structured replies, FLUSH, FUA, TRIM and WRITE_ZEROES as the
// device allows, block status (base:allocation, and blkclone:hydrated where a
// hook describes a clone's hydration) and CACHE; docs/design.md ("NBD export")
// lists what it supports and why.
// Each client gets a thread that reads its requests and submits them to the
// device without waiting, and a thread that sends replies as they complete.
//
//   BLKCLONE_ASSIGN_OR_RETURN(blkclone::NbdListenAddress address,
//                             blkclone::ParseNbdListenAddress("unix:/run/clone.sock"));
//   blkclone::NbdServer server(blkclone::AnyBlockDevice::Borrow(*clone),
//                              {.listen = address, .export_name = "clone"});
//   BLKCLONE_RETURN_IF_ERROR(server.Start());
//   ...                                   // until asked to stop
//   server.Stop();                        // answers every request already received
//   BLKCLONE_RETURN_IF_ERROR(clone->Close());
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "blkclone/any_block_device.hpp"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/internal/unique_fd.hpp"

namespace blkclone {

// Where the server listens: a Unix socket path, or a TCP host and port.
struct NbdListenAddress {
  enum class Kind : uint8_t { kTcp, kUnix };

  Kind kind = Kind::kTcp;
  std::string host = "127.0.0.1";  // kTcp: address or name; loopback unless told otherwise
  uint16_t port = 10809;           // kTcp: 0 lets the system pick (see NbdServer::port())
  std::string path = "";           // kUnix: the socket file

  static NbdListenAddress Unix(std::string path);
  static NbdListenAddress Tcp(std::string host, uint16_t port);
  // "unix:PATH" or "tcp:HOST:PORT" (an IPv6 host in brackets): what the parser reads.
  std::string ToString() const;

  bool operator==(const NbdListenAddress&) const = default;
};

// Parses "unix:PATH" or "tcp:HOST:PORT" ("tcp::PORT" and "tcp:PORT" mean host
// 127.0.0.1; an IPv6 HOST goes in brackets, "tcp:[::1]:10809"). kInvalidArgument
// says what is wrong.
[[nodiscard]] absl::StatusOr<NbdListenAddress> ParseNbdListenAddress(absl::string_view text);

// Part of a range that a clone has hydrated, or not: an answer for the
// metadata context blkclone:hydrated.
struct NbdHydrationRun {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool hydrated = false;

  bool operator==(const NbdHydrationRun&) const = default;
};

using NbdDescribeHydration =
    std::function<std::vector<NbdHydrationRun>(uint64_t offset, uint64_t length)>;
using NbdHydrateRange = std::function<absl::Status(uint64_t offset, uint64_t length)>;

struct NbdServerOptions {
  NbdListenAddress listen = {};
  // Clients name it in NBD_OPT_GO / EXPORT_NAME; the empty name (the
  // protocol's default export) is accepted as well.
  std::string export_name = "";
  std::string description = "";  // shown by clients such as nbdinfo
  // Refuse writes, trims and write-zeroes (EPERM), also on a writable device.
  bool read_only = false;
  // Advertise NBD_FLAG_CAN_MULTI_CONN: a FLUSH or FUA on one connection covers
  // writes completed on every connection. True for any device that keeps the
  // BlockDevice contract, whose flush is device-wide; clear it for a device
  // whose flush only covers its caller's writes.
  bool multi_conn = true;
  int max_connections = 16;  // more are accepted and closed at once
  // Per connection: data buffers (reads and writes in flight, replies being
  // sent) and requests in flight. At either limit the server stops reading
  // from that client until replies have gone out.
  uint64_t max_in_flight_bytes = 64 << 20;
  uint32_t max_in_flight_requests = 256;
  // How long Stop() lets clients take their last replies before it closes
  // their connections anyway.
  std::chrono::milliseconds drain_timeout{10000};
  // When set, clients may select the metadata context blkclone:hydrated,
  // answered from it: runs that cover [offset, offset + length) exactly, in
  // order, each a whole number of logical blocks (else the client gets EIO).
  // Called on a connection's reading thread, so it must be quick and must not
  // wait for the device. A clone's DescribeHydration.
  NbdDescribeHydration describe_hydration = nullptr;
  // NBD_CMD_CACHE: makes the range local, returning once it is or failed. Runs
  // on a few worker threads per connection; Stop() waits for those running.
  // Without it, CACHE (advisory) succeeds having done nothing. A clone's
  // HydrateRange.
  NbdHydrateRange hydrate_range = nullptr;
};

namespace internal {
struct NbdExport;
}  // namespace internal

// Threads: Start and Stop from one controlling thread; the server runs an accept
// thread and two threads per client. `device` is shared by all clients.
class NbdServer {
 public:
  // A borrowed `device` (AnyBlockDevice::Borrow) must outlive the server.
  NbdServer(AnyBlockDevice device, NbdServerOptions options);
  // Stop()s the server.
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Checks the options against the device, binds the address and starts
  // accepting clients. A stale Unix socket file (nobody listening) is replaced.
  // A server starts once; later calls fail with kFailedPrecondition.
  [[nodiscard]] absl::Status Start();
  // Stops accepting and reading; every request already received is completed
  // and answered (or its client is cut off after drain_timeout), then all
  // connections close. No request of the server is in flight on the device
  // when it returns. Removes the Unix socket file. Idempotent.
  void Stop();

  // The address as bound: for TCP port 0, the port the system chose.
  const NbdListenAddress& address() const { return address_; }
  uint16_t port() const { return address_.port; }
  // Clients connected right now.
  int connections() const;

 private:
  struct Client;

  void AcceptLoop();
  void StartClient(internal::UniqueFd fd);
  // Joins and destroys clients whose session has ended.
  void ReapFinished();

  AnyBlockDevice device_;
  const NbdServerOptions options_;
  NbdListenAddress address_;
  std::unique_ptr<internal::NbdExport> export_;
  internal::UniqueFd listen_fd_;
  internal::UniqueFd stop_fd_;  // an eventfd, readable once Stop() began
  std::thread acceptor_;
  bool started_ = false;  // touched by the controlling thread only

  mutable internal::Mutex mu_;
  internal::CondVar finished_cv_;  // a client's session ended
  std::vector<std::unique_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blkclone

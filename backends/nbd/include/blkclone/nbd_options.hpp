// What an NbdDevice is opened with (NbdOptions), what the server told it in
// the handshake (NbdExportInfo), and what it has lived through (NbdStats).
//
//   blkclone::NbdOptions options;
//   options.request_timeout = std::chrono::seconds(10);
//   options.reconnect_attempts = 20;
//   auto source = blkclone::NbdDevice::Open("nbd://backup:10809/disk0", options);
#pragma once

#include <chrono>
#include <cstdint>

namespace blkclone {

struct NbdOptions {
  // A source is only read; writes, flushes and discards need this (and a
  // writable export).
  bool writable = false;
  // Connections opened when the server advertises multi-conn (else one).
  int max_connections = 4;
  // NBD commands awaiting replies on one connection; more wait in a queue.
  int max_in_flight = 64;
  // From submission to completion, across retries; then kDeadlineExceeded.
  std::chrono::milliseconds request_timeout{30'000};
  // For one connection attempt: TCP or Unix connect plus the handshake.
  std::chrono::milliseconds connect_timeout{10'000};
  // Attempts per outage and connection before it counts as down (0: never
  // reconnect). The first comes at once, then after delays that double from
  // reconnect_initial_delay up to reconnect_max_delay.
  int reconnect_attempts = 10;
  std::chrono::milliseconds reconnect_initial_delay{100};
  std::chrono::milliseconds reconnect_max_delay{5'000};
  // Connection losses one request survives (it is sent again each time).
  int max_request_retries = 3;
};

// The export as the server described it in the handshake. Block sizes are 0
// where the server advertised none.
struct NbdExportInfo {
  uint64_t size = 0;
  uint32_t minimum_block_size = 0;
  uint32_t preferred_block_size = 0;
  uint32_t maximum_block_size = 0;
  bool read_only = false;
  bool can_flush = false;
  bool can_fua = false;
  bool can_trim = false;
  bool can_zero = false;
  bool can_multi_conn = false;
  bool structured_replies = false;
  bool can_block_status = false;  // the base:allocation metadata context was negotiated

  bool operator==(const NbdExportInfo&) const = default;
};

struct NbdStats {
  int connections = 0;      // opened by Open
  int connected = 0;        // of those, connected right now
  uint64_t reconnects = 0;  // successful reconnections
  uint64_t retries = 0;     // requests sent again after a connection loss
  uint64_t timeouts = 0;    // requests failed with kDeadlineExceeded
};

}  // namespace blkclone

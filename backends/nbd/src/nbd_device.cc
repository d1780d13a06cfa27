// NbdDevice: opening the connections, the DeviceInfo of an export, Submit.
#include "blkclone/nbd_device.hpp"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/nbd_client.hpp"
#include "blkclone/internal/nbd_client_connection.hpp"
#include "blkclone/internal/nbd_dispatcher.hpp"
#include "blkclone/status.hpp"

namespace blkclone {
namespace {

// What the NBD protocol lets a client send without an advertised maximum.
constexpr uint64_t kDefaultMaxTransfer = 32 << 20;
// libnbd refuses larger reads and writes whatever the server says.
constexpr uint64_t kLibnbdMaxTransfer = 64 << 20;
constexpr int kMaxConnections = 64;

absl::Status ValidateOptions(const NbdOptions& options) {
  const auto positive = [](std::chrono::milliseconds d) { return d.count() > 0; };
  if (options.max_connections < 1 || options.max_connections > kMaxConnections)
    return absl::InvalidArgumentError(absl::StrCat("max_connections must be 1..", kMaxConnections));
  if (options.max_in_flight < 1) return absl::InvalidArgumentError("max_in_flight must be >= 1");
  if (!positive(options.request_timeout) || !positive(options.connect_timeout))
    return absl::InvalidArgumentError("request_timeout and connect_timeout must be positive");
  if (options.reconnect_attempts < 0 || options.max_request_retries < 0)
    return absl::InvalidArgumentError("reconnect_attempts and max_request_retries must be >= 0");
  if (!positive(options.reconnect_initial_delay) ||
      options.reconnect_max_delay < options.reconnect_initial_delay)
    return absl::InvalidArgumentError(
        "reconnect_initial_delay must be positive and at most reconnect_max_delay");
  return absl::OkStatus();
}

absl::StatusOr<DeviceInfo> MakeDeviceInfo(const std::string& uri, const NbdExportInfo& export_info,
                                          bool writable) {
  if (writable && export_info.read_only)
    return absl::FailedPreconditionError(
        absl::StrCat(uri, ": the export is read-only, and writable was asked for"));
  const uint32_t block = std::max<uint32_t>(512, export_info.minimum_block_size);
  if (!std::has_single_bit(block))
    return absl::InvalidArgumentError(
        absl::StrCat(uri, ": the minimum block size ", block, " is not a power of two"));
  if (export_info.size % block != 0)
    return absl::InvalidArgumentError(absl::StrCat(uri, ": the export size ", export_info.size,
                                                   " is not a multiple of the block size ", block));
  const uint64_t maximum =
      export_info.maximum_block_size != 0 ? export_info.maximum_block_size : kDefaultMaxTransfer;
  const uint64_t max_transfer = std::min(maximum, kLibnbdMaxTransfer) / block * block;
  if (max_transfer == 0)
    return absl::InvalidArgumentError(absl::StrCat(uri, ": the maximum block size ", maximum,
                                                   " is below the block size ", block));
  return DeviceInfo{
      .size = export_info.size,
      .logical_block_size = block,
      .memory_alignment = 1,
      .max_transfer = max_transfer,
      .caps = {.discard = writable && export_info.can_trim,
               // NBD_CMD_TRIM promises nothing about what trimmed blocks read back as.
               .discard_zeroes_data = false,
               .write_zeroes = writable && export_info.can_zero,
               .read_only = !writable,
               .block_status = export_info.can_block_status,
               .volatile_write_cache = export_info.can_flush,
               // Without a cache to flush, every completed write is durable.
               .fua = export_info.can_fua || !export_info.can_flush ? FuaSupport::kNative
                                                                    : FuaSupport::kEmulated}};
}

}  // namespace

absl::StatusOr<std::unique_ptr<NbdDevice>> NbdDevice::Open(const std::string& uri,
                                                           const NbdOptions& options) {
  BLKCLONE_RETURN_IF_ERROR(ValidateOptions(options));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<internal::NbdClient> first,
                            internal::NbdClient::Connect(uri, options.connect_timeout));
  BLKCLONE_ASSIGN_OR_RETURN(const NbdExportInfo export_info, first->Describe());
  BLKCLONE_ASSIGN_OR_RETURN(const DeviceInfo info,
                            MakeDeviceInfo(uri, export_info, options.writable));
  std::vector<std::unique_ptr<internal::NbdClient>> clients;
  clients.push_back(std::move(first));
  const int wanted = export_info.can_multi_conn ? options.max_connections : 1;
  while (static_cast<int>(clients.size()) < wanted) {
    // A server may cap its connections (or change meanwhile): then fewer do.
    absl::StatusOr<std::unique_ptr<internal::NbdClient>> more =
        internal::NbdClient::Connect(uri, options.connect_timeout);
    if (!more.ok()) break;
    absl::StatusOr<NbdExportInfo> same = (*more)->Describe();
    if (!same.ok() || *same != export_info) break;
    clients.push_back(*std::move(more));
  }
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<internal::NbdDispatcher> dispatcher,
                            internal::NbdDispatcher::Create(uri, static_cast<int>(clients.size()),
                                                            options.request_timeout));
  std::unique_ptr<NbdDevice> device(new NbdDevice(uri, export_info, info, std::move(dispatcher)));
  const internal::NbdConnectionConfig config{
      .uri = uri, .options = options, .expected = export_info, .features = device->features_};
  for (size_t i = 0; i < clients.size(); ++i) {
    device->connections_.push_back(std::make_unique<internal::NbdClientConnection>(
        static_cast<int>(i), config, *device->dispatcher_, device->durability_,
        std::move(clients[i])));
  }
  return device;
}

NbdDevice::NbdDevice(std::string uri, const NbdExportInfo& export_info, const DeviceInfo& info,
                     std::unique_ptr<internal::NbdDispatcher> dispatcher)
    : uri_(std::move(uri)),
      export_info_(export_info),
      info_(info),
      features_(internal::NbdFeatures::For(export_info, info)),
      dispatcher_(std::move(dispatcher)) {}

NbdDevice::~NbdDevice() {
  dispatcher_->Stop();
  connections_.clear();  // each thread completes what it holds before it ends
  internal::NbdCommandList queued;
  dispatcher_->TakeAll(queued);
  dispatcher_->FinishAll(queued, [](const internal::NbdClientCommand& command) {
    return internal::ClosedError(command);
  });
}

void NbdDevice::Submit(Request& request) noexcept {
  if (absl::Status status = ValidateRequest(info_, request); !status.ok())
    return request.Complete(std::move(status));
  internal::NbdClientCommand& command = dispatcher_->NewCommand();
  internal::BeginCommand(command, request, features_);
  if (command.stage == internal::NbdClientCommand::Stage::kDone)
    return dispatcher_->Finish(command, absl::OkStatus());  // nothing to send, e.g. flush read-only
  if (request.op == Op::kFlush || (request.flags & kPreflush) != 0)
    command.flush_covers = durability_.writes();
  if (absl::Status status = dispatcher_->Enqueue(command); !status.ok())
    dispatcher_->Finish(command, std::move(status));
}

NbdStats NbdDevice::stats() const { return dispatcher_->stats(); }

}  // namespace blkclone

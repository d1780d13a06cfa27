// NbdClient over libnbd's asynchronous API.
#include "blkclone/internal/nbd_client.hpp"

#include <libnbd.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "blkclone/extents.hpp"
#include "blkclone/status.hpp"

namespace blkclone::internal {
namespace {

// libnbd calls this once per command, with the reply's errno (or its own,
// e.g. ENOTCONN when the connection died first).
int OnAnswer(void* user_data, int* error) {
  auto* command = static_cast<NbdClientCommand*>(user_data);
  command->answered = true;
  command->error = *error;
  // A server may leave out a context's chunk, which libnbd lets pass.
  if (command->error == 0 && command->request->op == Op::kBlockStatus && command->answer.empty())
    command->error = EPROTO;
  return 1;  // retire the command: nothing polls for its cookie
}

// libnbd calls this with each metadata context's part of a block status
// reply: (length, flags) pairs from `offset`, the command's offset.
int OnExtents(void* user_data, const char* context, uint64_t offset, uint32_t* entries,
              size_t count, int* error) {
  auto* command = static_cast<NbdClientCommand*>(user_data);
  if (std::strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 1;
  command->answer.clear();
  const uint64_t end = offset + command->sent_length;
  for (size_t i = 0; i + 1 < count && offset < end; i += 2) {
    if (entries[i] == 0) {
      *error = EPROTO;  // an empty extent: the server breaks the protocol
      return -1;
    }
    // The last extent may reach past what was asked.
    const uint64_t length = std::min<uint64_t>(entries[i], end - offset);
    AppendExtent(command->answer, offset, length, (entries[i + 1] & LIBNBD_STATE_ZERO) != 0);
    offset += length;
  }
  return 1;
}

// libnbd calls this once it will never touch the command (or its buffer)
// again, also when it refuses to send it and when the handle closes.
void OnRelease(void* user_data) { static_cast<NbdClientCommand*>(user_data)->released = true; }

// A libnbd query that answers -1 on error, else a value.
absl::StatusOr<int64_t> Query(int64_t value, absl::string_view what) {
  if (value < 0) return LibnbdError(what);
  return value;
}

}  // namespace

absl::Status LibnbdError(absl::string_view context) {
  const int error_number = nbd_get_errno();
  const char* message = nbd_get_error();
  const absl::StatusCode code =
      error_number != 0 ? ErrnoStatus(error_number, context).code() : absl::StatusCode::kUnknown;
  return absl::Status(code,
                      absl::StrCat(context, ": ", message != nullptr ? message : "libnbd error"));
}

absl::StatusOr<std::unique_ptr<NbdClient>> NbdClient::Start(const std::string& uri) {
  const std::string context = absl::StrCat("connecting to ", uri);
  nbd_handle* handle = nbd_create();
  if (handle == nullptr) return LibnbdError(context);
  std::unique_ptr<NbdClient> client(new NbdClient(handle));
  if (nbd_supports_uri(handle) != 1)
    return absl::UnimplementedError(absl::StrCat(context, ": libnbd was built without NBD URIs"));
  // Structured replies let the server fail a read cleanly in the middle and
  // let libnbd check that a read was answered in full; they also carry block
  // status, for which base:allocation is asked (servers may not offer it). A
  // read's buffer is used only after it succeeded, i.e. was filled in full, so
  // libnbd's zeroing of each buffer beforehand (a tenth of the client's CPU
  // when hydrating) is off.
  if (nbd_set_request_structured_replies(handle, true) == -1 ||
      nbd_add_meta_context(handle, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      nbd_set_pread_initialize(handle, false) == -1 ||
      nbd_aio_connect_uri(handle, uri.c_str()) == -1)
    return LibnbdError(context);
  return client;
}

absl::StatusOr<std::unique_ptr<NbdClient>> NbdClient::Connect(const std::string& uri,
                                                              std::chrono::milliseconds timeout) {
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<NbdClient> client, Start(uri));
  const auto deadline = NbdClock::now() + timeout;
  const std::string context = absl::StrCat("connecting to ", uri);
  while (!client->established()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - NbdClock::now());
    if (left.count() <= 0)
      return absl::DeadlineExceededError(
          absl::StrCat(context, ": no NBD handshake within ", timeout.count(), " ms"));
    if (nbd_poll(client->handle_, static_cast<int>(left.count())) == -1)
      return LibnbdError(context);
    if (client->dead())
      return absl::UnavailableError(absl::StrCat(context, ": closed during the NBD handshake"));
  }
  return client;
}

NbdClient::~NbdClient() {
  if (handle_ != nullptr) nbd_close(handle_);
}

bool NbdClient::established() const {
  return handle_ != nullptr &&
         (nbd_aio_is_ready(handle_) == 1 || nbd_aio_is_processing(handle_) == 1);
}

bool NbdClient::dead() const {
  return handle_ == nullptr || nbd_aio_is_dead(handle_) == 1 || nbd_aio_is_closed(handle_) == 1;
}

int NbdClient::fd() const { return nbd_aio_get_fd(handle_); }

short NbdClient::events() const {
  const unsigned direction = nbd_aio_get_direction(handle_);
  short events = 0;
  if ((direction & LIBNBD_AIO_DIRECTION_READ) != 0) events |= POLLIN;
  if ((direction & LIBNBD_AIO_DIRECTION_WRITE) != 0) events |= POLLOUT;
  return events;
}

absl::Status NbdClient::Notify(short revents) {
  // One notification per wake-up: the first may change what libnbd waits for,
  // which makes the second stale. Reads go first, since a reply the server
  // could not send may be what keeps it from reading our next command.
  int result = 0;
  if ((revents & (POLLIN | POLLHUP)) != 0) {
    result = nbd_aio_notify_read(handle_);
  } else if ((revents & POLLOUT) != 0) {
    result = nbd_aio_notify_write(handle_);
  } else if ((revents & (POLLERR | POLLNVAL)) != 0) {
    return absl::UnavailableError("the NBD socket failed");
  }
  if (result == -1) return LibnbdError("NBD connection");
  return absl::OkStatus();
}

absl::StatusOr<NbdExportInfo> NbdClient::Describe() const {
  NbdExportInfo info;
  BLKCLONE_ASSIGN_OR_RETURN(const int64_t size, Query(nbd_get_size(handle_), "export size"));
  info.size = static_cast<uint64_t>(size);
  const struct {
    int kind;
    uint32_t* field;
  } block_sizes[] = {{LIBNBD_SIZE_MINIMUM, &info.minimum_block_size},
                     {LIBNBD_SIZE_PREFERRED, &info.preferred_block_size},
                     {LIBNBD_SIZE_MAXIMUM, &info.maximum_block_size}};
  for (const auto& [kind, field] : block_sizes) {
    BLKCLONE_ASSIGN_OR_RETURN(const int64_t value,
                              Query(nbd_get_block_size(handle_, kind), "block size"));
    *field = static_cast<uint32_t>(value);
  }
  const struct {
    int (*query)(nbd_handle*);
    bool* field;
  } flags[] = {{nbd_is_read_only, &info.read_only},
               {nbd_can_flush, &info.can_flush},
               {nbd_can_fua, &info.can_fua},
               {nbd_can_trim, &info.can_trim},
               {nbd_can_zero, &info.can_zero},
               {nbd_can_multi_conn, &info.can_multi_conn},
               {nbd_get_structured_replies_negotiated, &info.structured_replies}};
  for (const auto& [query, field] : flags) {
    BLKCLONE_ASSIGN_OR_RETURN(const int64_t value, Query(query(handle_), "export flags"));
    *field = value != 0;
  }
  BLKCLONE_ASSIGN_OR_RETURN(
      const int64_t block_status,
      Query(nbd_can_meta_context(handle_, LIBNBD_CONTEXT_BASE_ALLOCATION), "metadata contexts"));
  info.can_block_status = block_status != 0;
  return info;
}

void NbdClient::Send(NbdClientCommand& command, const NbdWireCommand& wire) {
  command.sent_length = wire.length;
  command.answered = false;
  command.released = false;
  command.error = 0;
  command.refused = absl::OkStatus();
  command.answer.clear();
  // In the list before libnbd sees it: a refusal releases it inside the call.
  in_flight_.push_back(command);
  const nbd_completion_callback callback{
      .callback = &OnAnswer, .user_data = &command, .free = &OnRelease};
  const uint32_t flags = wire.fua ? LIBNBD_CMD_FLAG_FUA : 0;
  int64_t cookie = -1;
  switch (wire.op) {
    case Op::kRead:
      cookie = nbd_aio_pread(handle_, wire.data, wire.length, wire.offset, callback, 0);
      break;
    case Op::kWrite:
      cookie = nbd_aio_pwrite(handle_, wire.data, wire.length, wire.offset, callback, flags);
      break;
    case Op::kFlush:
      cookie = nbd_aio_flush(handle_, callback, 0);
      break;
    case Op::kDiscard:
      cookie = nbd_aio_trim(handle_, wire.length, wire.offset, callback, flags);
      break;
    case Op::kWriteZeroes:
      cookie = nbd_aio_zero(handle_, wire.length, wire.offset, callback, flags);
      break;
    case Op::kBlockStatus:
      cookie = nbd_aio_block_status(
          handle_, wire.length, wire.offset,
          nbd_extent_callback{.callback = &OnExtents, .user_data = &command, .free = nullptr},
          callback, 0);
      break;
  }
  if (cookie == -1) {
    // Counts as answered, with the refusal as its error. A handle that died
    // (perhaps sending an earlier command) refuses with EINVAL, "invalid
    // state": that is a lost connection, and the command goes elsewhere.
    command.answered = true;
    command.error = dead() ? ENOTCONN : nbd_get_errno() != 0 ? nbd_get_errno() : EINVAL;
    command.refused = LibnbdError(DescribeCommand(command));
  }
}

void NbdClient::TakeReleased(NbdCommandList& out) {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (!it->released) {
      ++it;
      continue;
    }
    NbdClientCommand& command = *it;
    it = in_flight_.erase(it);
    out.push_back(command);
  }
}

void NbdClient::Close(NbdCommandList& released) {
  nbd_close(handle_);  // releases every command
  handle_ = nullptr;
  TakeReleased(released);
}

}  // namespace blkclone::internal

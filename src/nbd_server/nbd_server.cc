// NbdServer: the accept loop, one session thread per client, and the drain on Stop.
#include "blkclone/nbd_server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

#include "blkclone/internal/nbd_connection.hpp"
#include "blkclone/internal/nbd_export.hpp"
#include "blkclone/status.hpp"
#include "listener.hpp"
#include "socket_stream.hpp"

namespace blkclone {
namespace {

// How often the accept loop joins the threads of sessions that ended, and how
// long it pauses when the process is out of file descriptors.
constexpr int kReapIntervalMs = 1000;
constexpr int kAcceptBackoffMs = 100;

}  // namespace

struct NbdServer::Client {
  Client(internal::UniqueFd fd, AnyBlockDevice& device, const internal::NbdExport& spec,
         internal::NbdLimits limits)
      : stream(std::move(fd)), connection(stream, device, spec, limits) {}

  internal::SocketStream stream;
  internal::NbdConnection connection;
  std::thread thread;     // runs connection.Serve()
  bool finished = false;  // guarded by NbdServer::mu_
};

NbdServer::NbdServer(AnyBlockDevice device, NbdServerOptions options)
    : device_(std::move(device)), options_(std::move(options)), address_(options_.listen) {}

NbdServer::~NbdServer() { Stop(); }

absl::Status NbdServer::Start() {
  if (started_) return absl::FailedPreconditionError("the NBD server was started before");
  BLKCLONE_ASSIGN_OR_RETURN(internal::NbdExport spec,
                            internal::MakeNbdExport(device_.info(), options_));
  internal::UniqueFd stop_fd(::eventfd(0, EFD_CLOEXEC));
  if (!stop_fd) return ErrnoStatus(errno, "eventfd");
  BLKCLONE_ASSIGN_OR_RETURN(internal::Listener listener, internal::Listen(options_.listen));
  export_ = std::make_unique<internal::NbdExport>(std::move(spec));
  listen_fd_ = std::move(listener.fd);
  address_ = std::move(listener.address);
  stop_fd_ = std::move(stop_fd);
  started_ = true;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void NbdServer::Stop() {
  if (!acceptor_.joinable()) return;
  const uint64_t one = 1;
  // An eventfd write of 1 cannot fail short of a bad descriptor.
  [[maybe_unused]] const ssize_t written = ::write(stop_fd_.get(), &one, sizeof(one));
  acceptor_.join();
  listen_fd_ = internal::UniqueFd();
  if (address_.kind == NbdListenAddress::Kind::kUnix) ::unlink(address_.path.c_str());

  std::vector<std::unique_ptr<Client>> clients;
  {
    internal::MutexLock lock(mu_);
    for (const auto& client : clients_) client->connection.Stop();
    finished_cv_.WaitFor(mu_, options_.drain_timeout, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::all_of(clients_.begin(), clients_.end(),
                         [](const auto& client) { return client->finished; });
    });
    // Clients that do not take their replies: cut them off. Their requests
    // still complete on the device before the session ends.
    for (const auto& client : clients_) {
      if (!client->finished) client->stream.Disconnect();
    }
    clients.swap(clients_);
  }
  for (const auto& client : clients) client->thread.join();
}

int NbdServer::connections() const {
  internal::MutexLock lock(mu_);
  return static_cast<int>(std::count_if(clients_.begin(), clients_.end(),
                                        [](const auto& client) { return !client->finished; }));
}

void NbdServer::AcceptLoop() {
  for (;;) {
    pollfd fds[] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, kReapIntervalMs) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    ReapFinished();
    if ((fds[1].revents & POLLIN) == 0) continue;
    internal::UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      // Out of descriptors or memory: wait for sessions to end (or for Stop).
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        ::poll(fds, 1, kAcceptBackoffMs);
      continue;
    }
    StartClient(std::move(fd));
  }
}

void NbdServer::StartClient(internal::UniqueFd fd) {
  if (address_.kind == NbdListenAddress::Kind::kTcp) {
    // Replies are small and latency-bound; do not let Nagle hold them back.
    const int on = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  }
  internal::MutexLock lock(mu_);
  const auto live = std::count_if(clients_.begin(), clients_.end(),
                                  [](const auto& client) { return !client->finished; });
  if (live >= options_.max_connections) return;  // closes the connection
  auto client = std::make_unique<Client>(
      std::move(fd), device_, *export_,
      internal::NbdLimits{.max_in_flight_bytes = options_.max_in_flight_bytes,
                          .max_in_flight_requests = options_.max_in_flight_requests});
  Client* const raw = client.get();
  clients_.push_back(std::move(client));
  raw->thread = std::thread([this, raw] {
    raw->connection.Serve();
    // The client sees the end at once; the descriptor closes when reaped.
    raw->stream.Disconnect();
    internal::MutexLock finished_lock(mu_);
    raw->finished = true;
    finished_cv_.SignalAll();
  });
}

void NbdServer::ReapFinished() {
  std::vector<std::unique_ptr<Client>> finished;
  {
    internal::MutexLock lock(mu_);
    auto done = std::stable_partition(clients_.begin(), clients_.end(),
                                      [](const auto& client) { return !client->finished; });
    std::move(done, clients_.end(), std::back_inserter(finished));
    clients_.erase(done, clients_.end());
  }
  for (const auto& client : finished) client->thread.join();
}

}  // namespace blkclone

// NbdDevice against a real nbdkit on a Unix socket: the conformance suite
// (read-write, over the memory plugin), open errors, content, block sizes,
// connections, flags, requests in flight, server errors, restarts, timeouts
// and shutdown. Every test skips when nbdkit is not installed.
#include "blkclone/nbd_device.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "bounded_wait.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbdkit_server.hpp"
#include "request_batch.hpp"

namespace blkclone {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::NbdkitServer;
using testing::PatternBuffer;
using testing::RequestBatch;
using testing::WaitUntil;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

// The device at `uri`; null, and a test failure, if it does not open.
std::unique_ptr<NbdDevice> OpenOrFail(const std::string& uri, const NbdOptions& options) {
  auto device = NbdDevice::Open(uri, options);
  if (!device.ok()) ADD_FAILURE() << device.status();
  return device.ok() ? *std::move(device) : nullptr;
}

// The servers for the conformance suite keep their data when a client goes,
// so a "crash" is a reconnection and loses nothing. The suite moves
// max_transfer bytes in one request, so each export advertises a maximum below
// its size.
template <class Server>
struct NbdkitFactory {
  using Device = NbdDevice;
  static constexpr bool kCrashLosesUnflushed = false;

  std::unique_ptr<NbdDevice> Create(uint64_t size) {
    std::vector<std::string> args = {"--filter=blocksize-policy"};
    for (std::string& arg : Server::Args(size, dir)) args.push_back(std::move(arg));
    args.push_back("blocksize-maximum=1M");
    auto started = NbdkitServer::Start(std::move(args));
    if (started.status().code() == absl::StatusCode::kUnimplemented) {
      std::cerr << "skipping: " << started.status() << "\n";
      return nullptr;
    }
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    server = *std::move(started);
    return OpenOrFail(server->uri(), {.writable = true});
  }
  std::unique_ptr<NbdDevice> Crash(std::unique_ptr<NbdDevice> device) {
    device.reset();
    return OpenOrFail(server->uri(), {.writable = true});
  }

  testing::TempDir dir = *testing::TempDir::Create("nbd-conformance");
  std::unique_ptr<NbdkitServer> server;
};

// nbdkit memory: sparse, base:allocation from its allocator.
struct MemoryServer {
  static std::vector<std::string> Args(uint64_t size, const testing::TempDir&) {
    return {"memory", absl::StrCat(size)};
  }
};
// nbdkit file over a sparse file: base:allocation from SEEK_DATA / SEEK_HOLE.
struct SparseFileServer {
  static std::vector<std::string> Args(uint64_t size, const testing::TempDir& dir) {
    return {"file", *dir.CreateFile("sparse.img", size)};  // ftruncate: all a hole
  }
};
// Simple replies only: no metadata contexts, so no block status.
struct SimpleRepliesServer {
  static std::vector<std::string> Args(uint64_t size, const testing::TempDir&) {
    return {"--no-sr", "memory", absl::StrCat(size)};
  }
};

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(NbdMemory, DeviceConformanceTest,
                               ::testing::Types<NbdkitFactory<MemoryServer>>);
INSTANTIATE_TYPED_TEST_SUITE_P(NbdSparseFile, DeviceConformanceTest,
                               ::testing::Types<NbdkitFactory<SparseFileServer>>);
INSTANTIATE_TYPED_TEST_SUITE_P(NbdSimpleReplies, DeviceConformanceTest,
                               ::testing::Types<NbdkitFactory<SimpleRepliesServer>>);
}  // namespace testing
namespace {

class NbdDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (NbdkitServer::Binary().empty()) GTEST_SKIP() << "nbdkit is not installed";
  }

  // Starts `nbdkit <args>`; null (and a failure) if it does not start.
  NbdkitServer* Serve(std::vector<std::string> args) {
    auto started = NbdkitServer::Start(std::move(args));
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    servers_.push_back(*std::move(started));
    return servers_.back().get();
  }

  // A file of `size` random bytes to serve with the file plugin.
  std::string SourceFile(uint64_t size) {
    source_.resize(size);
    std::mt19937 rng(size);
    for (std::byte& b : source_) b = std::byte(rng());
    const std::string path = (dir_.path() / "source.img").string();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(source_.data()), static_cast<std::streamsize>(size));
    return path;
  }

  static std::unique_ptr<NbdDevice> Open(const NbdkitServer& server, const NbdOptions& options) {
    return OpenOrFail(server.uri(), options);
  }

  bool MatchesSource(std::span<const std::byte> data, uint64_t offset) const {
    return offset + data.size() <= source_.size() &&
           std::memcmp(data.data(), source_.data() + offset, data.size()) == 0;
  }

  testing::TempDir dir_ = *testing::TempDir::Create("nbd-device-test");
  Bytes source_;
  // Each kills its nbdkit when the test ends, passed or failed.
  std::vector<std::unique_ptr<NbdkitServer>> servers_;
};

// The writes (with their FUA flag) and flushes an nbdkit log filter's file
// records, in the order the server received them.
std::vector<std::string> WritesAndFlushes(const std::string& log_file) {
  std::ifstream in(log_file);
  std::vector<std::string> ops;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" Flush id=") != std::string::npos) ops.push_back("flush");
    if (line.find(" Write id=") != std::string::npos)
      ops.push_back(line.find("fua=1") != std::string::npos ? "write+fua" : "write");
  }
  return ops;
}

// Reads that reached the server, and the most it was working on at once,
// from the log of nbdkit's log filter.
struct ServerReads {
  int arrived = 0, most_at_once = 0;
};
ServerReads ReadsAtTheServer(const std::string& log_file) {
  std::ifstream in(log_file);
  ServerReads reads;
  int now = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(" ...Read id=") != std::string::npos) {
      --now;
    } else if (line.find(" Read id=") != std::string::npos) {
      ++reads.arrived;
      reads.most_at_once = std::max(reads.most_at_once, ++now);
    }
  }
  return reads;
}

TEST_F(NbdDeviceTest, IsAReadOnlySourceByDefault) {
  NbdkitServer* server = Serve({"file", SourceFile(1 << 20)});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  const Capabilities caps = device->info().caps;
  EXPECT_TRUE(caps.read_only);
  EXPECT_FALSE(caps.discard);
  EXPECT_FALSE(caps.write_zeroes);
  PatternBuffer data(4096, 1);
  EXPECT_EQ(WriteAt(*device, 0, data.span()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Flush(*device).ok()) << "a read-only device has nothing to flush";
  ASSERT_TRUE(ReadAt(*device, 8192, data.span()).ok());
  EXPECT_TRUE(MatchesSource(data.span(), 8192));
}

TEST_F(NbdDeviceTest, OpenErrorsSayWhatIsWrong) {
  auto bad_scheme = NbdDevice::Open("http://example.com/disk", {});
  EXPECT_EQ(bad_scheme.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_scheme.status().message(), HasSubstr("scheme"));

  const std::string missing = (dir_.path() / "missing.sock").string();
  auto no_socket = NbdDevice::Open("nbd+unix:///?socket=" + missing, {});
  EXPECT_EQ(no_socket.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(no_socket.status().message(), HasSubstr(missing));

  const std::string not_a_socket = *dir_.CreateFile("plain", 512);
  auto refused = NbdDevice::Open("nbd+unix:///?socket=" + not_a_socket, {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("refused"));

  // Listens, but never speaks NBD: the handshake times out.
  const std::string mute = (dir_.path() / "mute.sock").string();
  internal::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un address{.sun_family = AF_UNIX, .sun_path = {}};
  std::strncpy(address.sun_path, mute.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  auto silent = NbdDevice::Open("nbd+unix:///?socket=" + mute, {.connect_timeout = 200ms});
  EXPECT_EQ(silent.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(silent.status().message(), HasSubstr("no NBD handshake within 200 ms"));

  NbdkitServer* named =
      Serve({"--filter=exportname", "memory", "1M", "exportname=disk", "exportname-strict=true"});
  ASSERT_NE(named, nullptr);
  auto no_export = NbdDevice::Open(named->uri("nope"), {});
  EXPECT_EQ(no_export.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(no_export.status().message(), HasSubstr("no export named 'nope'"));
  EXPECT_TRUE(NbdDevice::Open(named->uri("disk"), {}).ok());

  NbdkitServer* read_only = Serve({"--readonly", "memory", "1M"});
  ASSERT_NE(read_only, nullptr);
  auto writable = NbdDevice::Open(read_only->uri(), {.writable = true});
  EXPECT_EQ(writable.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(writable.status().message(), HasSubstr("read-only"));

  NbdkitServer* odd = Serve({"memory", "1000"});
  ASSERT_NE(odd, nullptr);
  auto odd_size = NbdDevice::Open(odd->uri(), {});
  EXPECT_EQ(odd_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd_size.status().message(), HasSubstr("not a multiple of the block size 512"));

  EXPECT_EQ(NbdDevice::Open(odd->uri(), {.max_connections = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NbdDeviceTest, ReadsTheWholeExportAsServed) {
  constexpr uint64_t kSize = 8 << 20, kChunk = 1 << 20;
  NbdkitServer* server = Serve({"file", SourceFile(kSize)});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  PatternBuffer whole(kSize);
  RequestBatch batch;
  for (uint64_t offset = 0; offset < kSize; offset += kChunk)
    batch.Add(Request::Read(offset, whole.span().subspan(offset, kChunk)));
  batch.SubmitAll(*device);
  batch.Wait();
  EXPECT_EQ(batch.Problems(), "");
  EXPECT_TRUE(MatchesSource(whole.span(), 0)) << "the export read back differs from the file";
}

TEST_F(NbdDeviceTest, HonoursTheServersBlockSizes) {
  NbdkitServer* server =
      Serve({"--filter=blocksize-policy", "memory", "4M", "blocksize-minimum=4096",
             "blocksize-preferred=65536", "blocksize-maximum=262144"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  EXPECT_EQ(device->info().logical_block_size, 4096u);
  EXPECT_EQ(device->info().max_transfer, 262144u);
  EXPECT_EQ(device->export_info().preferred_block_size, 65536u);
  PatternBuffer data(524288);
  EXPECT_EQ(ReadAt(*device, 0, data.span().first(512)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadAt(*device, 0, data.span()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadAt(*device, 4096, data.span().first(262144)).ok());
}

TEST_F(NbdDeviceTest, OpensSeveralConnectionsOnlyWithMultiConn) {
  NbdkitServer* multi = Serve({"memory", "1M"});
  NbdkitServer* single = Serve({"--filter=multi-conn", "memory", "1M", "multi-conn-mode=disable"});
  ASSERT_NE(multi, nullptr);
  ASSERT_NE(single, nullptr);
  const struct {
    NbdkitServer* server;
    int max_connections;
    int expected;
  } cases[] = {{multi, 4, 4}, {multi, 2, 2}, {single, 4, 1}};
  for (const auto& [server, max_connections, expected] : cases) {
    auto device = Open(*server, {.max_connections = max_connections});
    ASSERT_NE(device, nullptr);
    EXPECT_EQ(device->export_info().can_multi_conn, server == multi);
    EXPECT_EQ(device->stats().connections, expected) << "max_connections " << max_connections;
    EXPECT_EQ(device->stats().connected, expected);
  }
}

TEST_F(NbdDeviceTest, MapsFlushAndFuaToTheServersFlags) {
  const std::string native_log = (dir_.path() / "native.log").string();
  const std::string emulated_log = (dir_.path() / "emulated.log").string();
  NbdkitServer* native = Serve({"--filter=log", "memory", "1M", "logfile=" + native_log});
  // The fua filter's default mode hides the memory plugin's FUA from clients.
  NbdkitServer* emulated =
      Serve({"--filter=log", "--filter=fua", "memory", "1M", "logfile=" + emulated_log});
  ASSERT_NE(native, nullptr);
  ASSERT_NE(emulated, nullptr);
  PatternBuffer data(4096, 2);
  {
    auto device = Open(*native, {.writable = true, .max_connections = 1});
    EXPECT_EQ(device->info().caps.fua, FuaSupport::kNative);
    ASSERT_TRUE(WriteAt(*device, 0, data.span(), kFua).ok());
    ASSERT_TRUE(WriteAt(*device, 4096, data.span(), kPreflush).ok());
  }
  {
    auto device = Open(*emulated, {.writable = true, .max_connections = 1});
    EXPECT_EQ(device->info().caps.fua, FuaSupport::kEmulated);
    ASSERT_TRUE(WriteAt(*device, 0, data.span(), kFua).ok());
  }
  EXPECT_THAT(WritesAndFlushes(native_log), ::testing::ElementsAre("write+fua", "flush", "write"));
  EXPECT_THAT(WritesAndFlushes(emulated_log), ::testing::ElementsAre("write", "flush"));
}

TEST_F(NbdDeviceTest, FlushReportsWritesAServerRestartMayHaveLost) {
  NbdkitServer* server = Serve({"memory", "1M"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {.writable = true,
                               .max_connections = 1,
                               .reconnect_initial_delay = 10ms,
                               .reconnect_max_delay = 10ms});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(4096, 3);
  ASSERT_TRUE(WriteAt(*device, 0, data.span()).ok());
  ASSERT_TRUE(server->Restart().ok());  // memory is volatile: the write is gone
  ASSERT_TRUE(WaitUntil([&] { return device->stats().reconnects > 0; }));
  ASSERT_EQ(device->stats().reconnects, 1u);
  const absl::Status flushed = Flush(*device);
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDataLoss) << flushed;
  EXPECT_THAT(flushed.message(), HasSubstr("may have lost them"));
  EXPECT_TRUE(Flush(*device).ok()) << "a loss is reported once";
  ASSERT_TRUE(WriteAt(*device, 0, data.span(), kFua).ok());
  ASSERT_TRUE(server->Restart().ok());
  ASSERT_TRUE(WaitUntil([&] { return device->stats().reconnects >= 2; }));
  EXPECT_TRUE(Flush(*device).ok()) << "FUA writes were durable already";
}

TEST_F(NbdDeviceTest, KeepsManyRequestsInFlightAtTheServer) {
  constexpr int kRequests = 64;
  constexpr uint64_t kLength = 64 << 10;
  const std::string log = (dir_.path() / "requests.log").string();
  NbdkitServer* server = Serve({"--threads", "64", "--filter=log", "--filter=delay", "file",
                                SourceFile(kRequests * kLength), "logfile=" + log, "rdelay=5ms"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(kRequests * kLength);
  RequestBatch batch;
  for (int i = 0; i < kRequests; ++i)
    batch.Add(Request::Read(i * kLength, data.span().subspan(i * kLength, kLength)));
  const auto start = Clock::now();
  batch.SubmitAll(*device);
  batch.Wait();
  std::cout << "64 reads of 64 KiB, 5 ms each at the server, took "
            << std::chrono::duration<double, std::milli>(Clock::now() - start).count() << " ms\n";
  EXPECT_EQ(batch.Problems(), "");
  EXPECT_TRUE(MatchesSource(data.span(), 0));
  device.reset();  // the log is complete once the connections are closed
  const int most = ReadsAtTheServer(log).most_at_once;
  std::cout << "the server had up to " << most << " of them at once\n";
  EXPECT_GE(most, 16) << "one at a time would be 1";
}

TEST_F(NbdDeviceTest, ServerErrorsFailThatRequestOnly) {
  const std::string trigger = (dir_.path() / "fail-reads").string();
  NbdkitServer* server = Serve({"--filter=error", "file", SourceFile(1 << 20), "error=EIO",
                                "error-pread-rate=100%", "error-pread-file=" + trigger});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(4096);
  std::ofstream(trigger).put('1');
  const absl::Status failed = ReadAt(*device, 65536, data.span());
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal) << failed;  // EIO
  EXPECT_THAT(failed.message(), HasSubstr("NBD read at offset 65536 length 4096"));
  EXPECT_THAT(failed.message(), HasSubstr("Input/output error"));
  std::filesystem::remove(trigger);
  ASSERT_TRUE(ReadAt(*device, 65536, data.span()).ok());
  EXPECT_TRUE(MatchesSource(data.span(), 65536));
  EXPECT_EQ(device->stats().retries, 0u) << "server errors are reported, not retried";
}

// The extents DescribeAllocation gives for the whole device, or a failure.
std::vector<Extent> WholeAllocation(NbdDevice& device) {
  absl::StatusOr<std::vector<Extent>> extents = DescribeAllocation(device, 0, device.info().size);
  EXPECT_TRUE(extents.ok()) << extents.status();
  return extents.ok() ? *std::move(extents) : std::vector<Extent>{};
}

constexpr Extent Hole(uint64_t offset, uint64_t length) { return {offset, length, true}; }
constexpr Extent Data(uint64_t offset, uint64_t length) { return {offset, length, false}; }

TEST_F(NbdDeviceTest, DescribesTheServersHolesInWholeBlocks) {
  // Boundaries at 5096 and 4096 + 1000, inside 512-byte and 4 KiB blocks; an
  // extent that only reads as zeroes (NBD_STATE_ZERO) is a hole too.
  const std::string list = (dir_.path() / "extents").string();
  std::ofstream(list) << "0 4096 hole,zero\n4096 1000\n5096 60440 zero\n65536 131072\n";
  for (const auto& [block, expected] :
       {std::pair<uint64_t, std::vector<Extent>>{
            512,
            {Hole(0, 4096), Data(4096, 1024), Hole(5120, 60416), Data(65536, 131072),
             Hole(196608, 851968)}},
        {4096,
         {Hole(0, 4096), Data(4096, 4096), Hole(8192, 57344), Data(65536, 131072),
          Hole(196608, 851968)}}}) {
    NbdkitServer* server =
        Serve({"--filter=blocksize-policy", "--filter=extentlist", "memory", "1M",
               absl::StrCat("blocksize-minimum=", block), "extentlist=" + list});
    ASSERT_NE(server, nullptr);
    auto device = Open(*server, {});
    ASSERT_NE(device, nullptr);
    EXPECT_TRUE(device->info().caps.block_status);
    EXPECT_EQ(WholeAllocation(*device), expected) << "block size " << block;
  }
}

TEST_F(NbdDeviceTest, AsksAgainWhereTheServerStoppedAnswering) {
  // One 64 KiB extent per answer, holes and data in turn.
  NbdkitServer* server = Serve(
      {"eval", "get_size=echo 1M", "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
       "can_extents=exit 0",
       "extents=if [ $(($4 / 65536 % 2)) = 0 ]; then echo $4 65536 hole,zero; else echo $4 "
       "65536; fi"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  std::vector<Extent> expected;
  for (uint64_t offset = 0; offset < (1 << 20); offset += 65536)
    expected.push_back({offset, 65536, offset / 65536 % 2 == 0});
  EXPECT_EQ(WholeAllocation(*device), expected);
}

TEST_F(NbdDeviceTest, AsksForBlockStatusAgainAfterTheServerRestarts) {
  const std::string log = (dir_.path() / "requests.log").string();
  const std::string file = *dir_.CreateFile("sparse.img", 1 << 20);
  std::ofstream(file, std::ios::in | std::ios::out | std::ios::binary).seekp(65536).write("data", 4);
  NbdkitServer* server = Serve(
      {"--filter=log", "--filter=delay", "file", file, "logfile=" + log, "delay-extents=300ms"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {.max_connections = 1,
                               .reconnect_attempts = 50,
                               .reconnect_initial_delay = 10ms,
                               .reconnect_max_delay = 50ms});
  ASSERT_NE(device, nullptr);
  std::vector<Extent> extents;
  RequestBatch batch;
  batch.Add(Request::BlockStatus(0, 1 << 20, &extents));
  batch.SubmitAll(*device);
  ASSERT_TRUE(WaitUntil([&] {  // at the server, which sleeps on it
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {}).find(" Extents id=") !=
           std::string::npos;
  }));
  ASSERT_TRUE(server->Restart().ok());
  batch.Wait();
  EXPECT_EQ(batch.Problems(), "");
  // File systems allocate in blocks of their own, 4 KiB at least.
  ASSERT_EQ(extents.size(), 3u);
  EXPECT_EQ(extents[0], Hole(0, 65536));
  EXPECT_FALSE(extents[1].hole);
  EXPECT_TRUE(extents[2].hole);
  EXPECT_EQ(extents[2].end(), 1u << 20);
  EXPECT_GE(device->stats().retries, 1u);
}

// A clone of an NbdDevice into memory, hydrated in the background.
class NbdClone {
 public:
  using Copier = BufferedCopier<NbdDevice, MemoryDevice>;
  using CloneT = Clone<NbdDevice, MemoryDevice, Copier>;
  static constexpr uint64_t kRegion = 64 << 10;

  NbdClone(NbdDevice& source, const HydratorOptions& options)
      : dest_(*MemoryDevice::Create({.size = source.info().size})),
        copier_(source, *dest_, {.chunk_size = kRegion}),
        metadata_(*MakeCloneGeometry(source.info(), dest_->info(), kRegion)),
        clone_(*CloneT::Create(source, *dest_, copier_, metadata_, {})),
        hydrator_(std::make_unique<Hydrator<CloneT>>(*clone_, options)) {}
  ~NbdClone() {
    (void)clone_->Close();
    hydrator_.reset();
  }

  bool WaitUntilHydrated(std::chrono::milliseconds timeout) {
    return hydrator_->WaitUntilComplete(timeout);
  }
  uint64_t hydrated_regions() const { return hydrator_->progress().hydrated_regions; }
  Bytes dest_contents() const { return dest_->Contents(); }

 private:
  std::unique_ptr<MemoryDevice> dest_;
  Copier copier_;
  InMemoryMetadata metadata_;
  std::unique_ptr<CloneT> clone_;
  std::unique_ptr<Hydrator<CloneT>> hydrator_;
};

// Retries soon, and often enough to outlast a 10% error rate or a restart.
constexpr HydratorOptions kPatientHydrator{.threshold = 4,
                                           .max_consecutive_failures = 50,
                                           .first_retry_delay = 2ms,
                                           .max_retry_delay = 50ms};

TEST_F(NbdDeviceTest, HydrationRetriesThroughServerErrors) {
  NbdkitServer* server =
      Serve({"--filter=error", "file", SourceFile(4 << 20), "error=EIO", "error-pread-rate=10%"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {});
  ASSERT_NE(device, nullptr);
  NbdClone clone(*device, kPatientHydrator);
  ASSERT_TRUE(clone.WaitUntilHydrated(30s));
  EXPECT_TRUE(clone.dest_contents() == source_) << "the destination differs from the source";
  EXPECT_THAT(server->log(), HasSubstr("injecting EIO error")) << "no read ever failed";
}

TEST_F(NbdDeviceTest, ResendsRequestsAfterTheServerRestarts) {
  constexpr int kRequests = 16;
  constexpr uint64_t kLength = 64 << 10;
  const std::string log = (dir_.path() / "requests.log").string();
  NbdkitServer* server = Serve({"--filter=log", "--filter=delay", "file",
                                SourceFile(kRequests * kLength), "logfile=" + log, "rdelay=300ms"});
  ASSERT_NE(server, nullptr);
  auto device = Open(
      *server,
      {.reconnect_attempts = 50, .reconnect_initial_delay = 10ms, .reconnect_max_delay = 50ms});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(kRequests * kLength);
  RequestBatch batch;
  for (int i = 0; i < kRequests; ++i)
    batch.Add(Request::Read(i * kLength, data.span().subspan(i * kLength, kLength)));
  batch.SubmitAll(*device);
  // At the server, which sleeps on them.
  ASSERT_TRUE(WaitUntil([&] { return ReadsAtTheServer(log).arrived > 0; }));
  ASSERT_TRUE(server->Restart().ok());
  batch.Wait();
  EXPECT_EQ(batch.Problems(), "");
  EXPECT_TRUE(MatchesSource(data.span(), 0));
  const NbdStats stats = device->stats();
  EXPECT_GE(stats.reconnects, 1u);
  EXPECT_GE(stats.retries, 1u);
}

TEST_F(NbdDeviceTest, HydrationSurvivesAServerRestart) {
  NbdkitServer* server = Serve({"--filter=delay", "file", SourceFile(16 << 20), "rdelay=5ms"});
  ASSERT_NE(server, nullptr);
  auto device = Open(
      *server,
      {.reconnect_attempts = 50, .reconnect_initial_delay = 10ms, .reconnect_max_delay = 100ms});
  ASSERT_NE(device, nullptr);
  NbdClone clone(*device, kPatientHydrator);
  ASSERT_TRUE(WaitUntil([&] { return clone.hydrated_regions() >= 16; }));
  server->Kill(SIGKILL);
  ASSERT_TRUE(WaitUntil([&] { return device->stats().connected == 0; }));  // seen gone
  ASSERT_TRUE(server->Restart().ok());
  ASSERT_TRUE(clone.WaitUntilHydrated(30s));
  EXPECT_TRUE(clone.dest_contents() == source_) << "the destination differs from the source";
  EXPECT_GE(device->stats().reconnects, 1u);
}

TEST_F(NbdDeviceTest, FailsFastWhileTheServerIsGoneThenRecovers) {
  NbdkitServer* server = Serve({"memory", "1M"});
  ASSERT_NE(server, nullptr);
  auto device =
      Open(*server,
           {.reconnect_attempts = 2, .reconnect_initial_delay = 10ms, .reconnect_max_delay = 10ms});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(4096);
  ASSERT_TRUE(ReadAt(*device, 0, data.span()).ok());
  server->Kill(SIGKILL);
  absl::Status gone;
  EXPECT_TRUE(WaitUntil([&] {
    gone = ReadAt(*device, 0, data.span());
    return gone.code() == absl::StatusCode::kUnavailable;
  })) << gone;
  EXPECT_THAT(gone.message(), HasSubstr(server->uri()));
  const auto start = Clock::now();
  EXPECT_EQ(ReadAt(*device, 0, data.span()).code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, 1s) << "a request waited although every connection was down";

  ASSERT_TRUE(server->Restart().ok());
  absl::Status back;
  EXPECT_TRUE(WaitUntil([&] {
    back = ReadAt(*device, 0, data.span());
    return back.ok();
  })) << back;
}

TEST_F(NbdDeviceTest, TimesOutAServerThatStopsAnswering) {
  NbdkitServer* server = Serve({"--filter=delay", "memory", "1M", "rdelay=60"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {.request_timeout = 300ms, .reconnect_initial_delay = 10ms});
  ASSERT_NE(device, nullptr);
  PatternBuffer data(4096);
  const auto start = Clock::now();
  const absl::Status status = ReadAt(*device, 0, data.span());
  const auto took = Clock::now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(), HasSubstr("NBD read at offset 0 length 4096"));
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 10s);
  EXPECT_EQ(device->stats().timeouts, 1u);
  const auto closing = Clock::now();
  device.reset();
  EXPECT_LT(Clock::now() - closing, 5s);
}

TEST_F(NbdDeviceTest, DestructionCompletesEveryRequestOnce) {
  constexpr int kRequests = 64;
  NbdkitServer* server = Serve({"--filter=delay", "memory", "4M", "rdelay=100ms"});
  ASSERT_NE(server, nullptr);
  auto device = Open(*server, {.max_in_flight = 8});
  ASSERT_NE(device, nullptr);
  struct Outcome {
    Request request;
    std::atomic<int> completions{0};
    absl::StatusCode code = absl::StatusCode::kUnknown;  // written by the one completion
  };
  std::vector<Outcome> outcomes(kRequests);
  PatternBuffer data(kRequests * 4096);
  for (int i = 0; i < kRequests; ++i) {
    Outcome& outcome = outcomes[i];
    outcome.request = Request::Read(i * 4096, data.span().subspan(i * 4096, 4096));
    outcome.request.context = &outcome;
    outcome.request.on_complete = [](Request& r, absl::Status s) {
      auto* o = static_cast<Outcome*>(r.context);
      o->code = s.code();
      o->completions.fetch_add(1);
    };
    device->Submit(outcome.request);
  }
  device.reset();
  int cancelled = 0;
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(outcomes[i].completions.load(), 1) << "request " << i;
    const absl::StatusCode code = outcomes[i].code;
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kCancelled) << code;
    cancelled += code == absl::StatusCode::kCancelled;
  }
  EXPECT_GT(cancelled, 0) << "nothing was in flight at destruction";
}

}  // namespace
}  // namespace blkclone

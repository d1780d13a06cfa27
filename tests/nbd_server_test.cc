// NbdServer against real NBD clients (nbdinfo, nbdcopy, nbdsh, qemu-img, fio)
// and raw protocol conversations, all over Unix sockets in a scratch directory
// (one test over loopback TCP). Every test checks content or exact error codes,
// not only exit statuses. A test that needs a client that is not installed is
// skipped, saying which.
#include "blkclone/nbd_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/internal/nbd_protocol.hpp"
#include "blkclone/internal/unique_fd.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "bounded_wait.hpp"
#include "controlled_copier.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd_server_fixture.hpp"
#include "nlohmann/json.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using namespace testing;  // NOLINT: the fixture, the clients and the test helpers
using ::testing::HasSubstr;

// ---- Real clients ----

TEST_F(NbdServerTest, NbdinfoSeesSizeFlagsBlockSizesAndDescription) {
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServeMemory({.export_name = "disk", .description = "blkclone test disk"});
  ASSERT_NE(server, nullptr);
  const ProgramResult info = RunProgram({"nbdinfo", "--json", Uri("disk")});
  EXPECT_PROGRAM_OK(info);
  const nlohmann::json json = ParseJson(info.output);
  EXPECT_EQ(json.value("structured", false), true) << info.output;
  const nlohmann::json disk = FirstExport(json);
  const nlohmann::json expected = {
      {"export-size", 8388608}, {"is_read_only", false}, {"can_flush", true},
      {"can_fua", true}, {"can_trim", true}, {"can_zero", true}, {"can_multi_conn", true},
      {"block_size_minimum", 512}, {"block_size_preferred", 4096},
      {"block_size_maximum", 33554432}, {"description", "blkclone test disk"}};
  for (const auto& [key, value] : expected.items())
    EXPECT_EQ(disk.value(key, nlohmann::json()), value) << key << " in " << info.output;
  const ProgramResult list = RunProgram({"nbdinfo", "--list", Uri()});
  EXPECT_PROGRAM_OK(list);
  EXPECT_THAT(list.output, HasSubstr("export=\"disk\""));
  EXPECT_THAT(list.output, HasSubstr("blkclone test disk"));
}

TEST_F(NbdServerTest, NbdinfoSeesReadOnlyExportWithoutTrimOrZero) {
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServeMemory({.read_only = true, .multi_conn = false});
  ASSERT_NE(server, nullptr);
  const ProgramResult info = RunProgram({"nbdinfo", "--json", Uri()});
  EXPECT_PROGRAM_OK(info);
  const nlohmann::json disk = FirstExport(ParseJson(info.output));
  for (const char* key : {"can_trim", "can_zero", "can_multi_conn"})
    EXPECT_EQ(disk.value(key, nlohmann::json()), false) << key << " in " << info.output;
  EXPECT_EQ(disk.value("is_read_only", nlohmann::json()), true) << info.output;
}

TEST_F(NbdServerTest, NbdcopyCopiesTheExportOutAndAFileIn) {
  REQUIRE_PROGRAM("nbdcopy");
  const Bytes original = RandomBytes(kSize, 1);
  memory_->Fill(0, original);
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  // nbdcopy opens several connections at once, since the export allows multi-conn.
  EXPECT_PROGRAM_OK(RunProgram({"nbdcopy", Uri(), File("out.img")}));
  EXPECT_TRUE(ReadFile(File("out.img")) == original);

  const Bytes replacement = RandomBytes(kSize, 2);
  WriteFile(File("in.img"), replacement);
  EXPECT_PROGRAM_OK(RunProgram({"nbdcopy", File("in.img"), Uri()}));
  EXPECT_TRUE(memory_->Contents() == replacement);
}

TEST_F(NbdServerTest, NbdshReadsWritesFlushesTrimsAndZeroesWithStructuredReplies) {
  REQUIRE_NBDSH();
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  const ProgramResult result = RunNbdsh(R"(
assert h.get_structured_replies_negotiated()
assert h.get_size() == 8388608
assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_multi_conn()
assert not h.is_read_only()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 33554432
data = bytes((i * 7) % 251 for i in range(65536))
h.pwrite(data, 4096, nbd.CMD_FLAG_FUA)
assert h.pread(65536, 4096) == data
h.flush()
h.pwrite(b'\x55' * 8192, 1048576)
h.trim(8192, 1048576, nbd.CMD_FLAG_FUA)
h.pwrite(b'\xaa' * 16384, 2097152)
h.zero(8192, 2097152, nbd.CMD_FLAG_FUA)
h.zero(4096, 2105344, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(16384, 2097152) == bytes(12288) + b'\xaa' * 4096
h.set_strict_mode(0)
def fails(call, code):
    try:
        call()
    except nbd.Error as e:
        assert e.errno == code, (e.errno, e.string)
        return
    raise AssertionError('no error')
fails(lambda: h.pread(4096, 8388608), 'EINVAL')
fails(lambda: h.pwrite(bytes(4096), 8388608 - 2048), 'ENOSPC')
fails(lambda: h.pread(100, 0), 'EINVAL')
assert h.pread(512, 4096) == data[:512]
)");
  EXPECT_PROGRAM_OK(result);
  const Bytes contents = memory_->Contents();
  Bytes data(65536);
  for (size_t i = 0; i < data.size(); ++i) data[i] = std::byte((i * 7) % 251);
  EXPECT_TRUE(Slice(contents, 4096, 65536) == data);
  EXPECT_TRUE(Slice(contents, 2097152, 12288) == Bytes(12288));
  EXPECT_TRUE(Slice(contents, 2097152 + 12288, 4096) == Bytes(4096, std::byte{0xaa}));
  EXPECT_TRUE(Slice(contents, 8388608 - 2048, 2048) == Bytes(2048));  // refused write
}

TEST_F(NbdServerTest, NbdshWorksWithSimpleReplies) {
  REQUIRE_NBDSH();
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  const ProgramResult result = RunNbdsh(absl::Substitute(R"(
h.set_request_structured_replies(False)
h.connect_uri('$0')
assert not h.get_structured_replies_negotiated()
h.pwrite(b'\x11' * 4096, 8192, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 8192) == b'\x11' * 4096
h.set_strict_mode(0)
try:
    h.pread(4096, 8388608)
    raise AssertionError('no error')
except nbd.Error as e:
    assert e.errno == 'EINVAL', e.errno
assert h.pread(4096, 8192) == b'\x11' * 4096
)",
                                                         Uri()),
                                        /*connect=*/false);
  EXPECT_PROGRAM_OK(result);
  EXPECT_TRUE(Slice(memory_->Contents(), 8192, 4096) == Bytes(4096, std::byte{0x11}));
}

TEST_F(NbdServerTest, QemuImgInfoConvertAndCompare) {
  REQUIRE_PROGRAM("qemu-img");
  const Bytes original = RandomBytes(kSize, 3);
  memory_->Fill(0, original);
  auto server = ServeMemory({.export_name = "disk"});
  ASSERT_NE(server, nullptr);
  const std::string uri = Uri("disk");

  const ProgramResult info = RunProgram({"qemu-img", "info", "--output=json", uri});
  EXPECT_PROGRAM_OK(info);
  EXPECT_EQ(ParseJson(info.output).value("virtual-size", nlohmann::json()), 8388608)
      << info.output;

  EXPECT_PROGRAM_OK(
      RunProgram({"qemu-img", "convert", "-f", "raw", "-O", "raw", uri, File("out.img")}));
  EXPECT_TRUE(ReadFile(File("out.img")) == original);
  EXPECT_PROGRAM_OK(
      RunProgram({"qemu-img", "compare", "-f", "raw", "-F", "raw", uri, File("out.img")}));

  // Half zeroes, so that qemu-img also sends write-zeroes or trims.
  Bytes replacement = RandomBytes(kSize, 4);
  std::fill(replacement.begin() + kSize / 2, replacement.end(), std::byte{0});
  WriteFile(File("in.img"), replacement);
  EXPECT_PROGRAM_OK(
      RunProgram({"qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", File("in.img"), uri}));
  EXPECT_TRUE(memory_->Contents() == replacement);
  memory_->Fill(12345 * 512, Bytes(512, std::byte{0xee}));
  EXPECT_EQ(
      RunProgram({"qemu-img", "compare", "-f", "raw", "-F", "raw", uri, File("in.img")}).exit_code,
      1);
}

TEST_F(NbdServerTest, FioWritesAndVerifiesCrc32c) {
  REQUIRE_PROGRAM("fio");
  DelayDevice disk(*memory_, {.max_delay = std::chrono::microseconds(100)});
  auto server = Serve(AnyBlockDevice::Borrow(disk));
  ASSERT_NE(server, nullptr);
  const ProgramResult fio = RunProgram(
      {"fio", "--name=verify", "--ioengine=nbd", "--uri=" + Uri(), "--rw=randwrite", "--bs=4k",
       "--size=4M", "--iodepth=16", "--verify=crc32c", "--verify_fatal=1", "--output-format=json"});
  EXPECT_PROGRAM_OK(fio);
  // 4 MiB written, then read back and verified.
  EXPECT_GE(CountOccurrences(fio.output, "\"io_bytes\" : 4194304"), 2u) << fio.output;
  // Every block carries fio's verify header (magic 0xacca, little-endian).
  const Bytes contents = memory_->Contents();
  for (uint64_t block = 0; block < (4 << 20); block += 4096) {
    ASSERT_EQ(contents[block], std::byte{0xca}) << "block at " << block;
    ASSERT_EQ(contents[block + 1], std::byte{0xac}) << "block at " << block;
  }
}

TEST_F(NbdServerTest, TrimThroughACloneHydratesWithoutCopying) {
  REQUIRE_NBDSH();
  constexpr uint64_t kRegion = 64 << 10;
  auto source = *MemoryDevice::Create({.size = kSize, .caps = {}});
  const Bytes source_data = RandomBytes(kSize, 5);
  source->Fill(0, source_data);
  auto dest = *MemoryDevice::Create({.size = kSize});
  InMemoryMetadata metadata(*MakeCloneGeometry(source->info(), dest->info(), kRegion));
  using Base = BufferedCopier<MemoryDevice, MemoryDevice>;
  Base base(*source, *dest);
  ControlledCopier<Base> copier(base);
  auto clone = Clone<MemoryDevice, MemoryDevice, ControlledCopier<Base>>::Create(
      *source, *dest, copier, metadata, {});
  ASSERT_TRUE(clone.ok()) << clone.status();
  auto server = Serve(AnyBlockDevice::Borrow(**clone));
  ASSERT_NE(server, nullptr);

  // Regions 32..47 trimmed whole, then flushed (a commit); a partial write to
  // region 5 (which must copy it first); reads of unhydrated data.
  const ProgramResult result =
      RunNbdsh(absl::Substitute(R"(
assert h.can_trim()
h.trim($1, $0)
h.flush()
h.pwrite(b'\x77' * 4096, $2, nbd.CMD_FLAG_FUA)
assert h.pread(4096, $2) == b'\x77' * 4096
)",
                                32 * kRegion, 16 * kRegion, 5 * kRegion + 4096));
  EXPECT_PROGRAM_OK(result);
  server->Stop();

  EXPECT_EQ(copier.jobs(), 1);  // region 5 only
  const RegionMap& map = metadata.map();
  for (uint64_t region = 32; region < 48; ++region) EXPECT_TRUE(map.IsSet(region)) << region;
  EXPECT_FALSE(map.IsSet(31));
  EXPECT_FALSE(map.IsSet(48));
  EXPECT_TRUE(map.IsSet(5));
  const std::vector<bool> committed = metadata.CommittedRegions();
  for (uint64_t region = 32; region < 48; ++region) EXPECT_TRUE(committed[region]) << region;

  Bytes region5(kRegion);
  ASSERT_TRUE(ReadAt(**clone, 5 * kRegion, region5).ok());
  Bytes expected = Slice(source_data, 5 * kRegion, kRegion);
  std::fill(expected.begin() + 4096, expected.begin() + 8192, std::byte{0x77});
  EXPECT_TRUE(region5 == expected);
  EXPECT_TRUE((*clone)->Close().ok());
}

TEST_F(NbdServerTest, SeveralClientsAtOnce) {
  REQUIRE_NBDSH();
  DelayDevice disk(*memory_, {.max_delay = std::chrono::microseconds(300), .worker_threads = 3});
  auto server = Serve(AnyBlockDevice::Borrow(disk));
  ASSERT_NE(server, nullptr);
  // Each client pipelines 256 writes of 4 KiB into its own MiB, then reads it.
  constexpr int kClients = 4;
  std::vector<std::unique_ptr<Child>> children;
  for (int k = 1; k <= kClients; ++k) {
    const std::string code = absl::Substitute(R"(
base = $0 * 1048576
for i in range(256):
    h.aio_pwrite(bytes([$0, i]) * 2048, base + i * 4096)
    while h.aio_in_flight() > 32:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
expected = b''.join(bytes([$0, i]) * 2048 for i in range(256))
assert h.pread(1048576, base) == expected
)",
                                              k);
    std::vector<std::string> args = NbdshCommand();
    args.insert(args.end(), {"-u", Uri(), "-c", code});
    children.push_back(std::make_unique<Child>(args, File(absl::StrCat("c", k))));
  }
  for (auto& child : children) EXPECT_PROGRAM_OK(child->Wait());
  const Bytes contents = memory_->Contents();
  for (int k = 1; k <= kClients; ++k) {
    for (int i = 0; i < 256; ++i) {
      const uint64_t at = k * kMiB + i * 4096;
      ASSERT_EQ(contents[at], std::byte(k)) << at;
      ASSERT_EQ(contents[at + 4095], std::byte(i)) << at;
    }
  }
}

TEST_F(NbdServerTest, ServesOverLoopbackTcp) {
  NbdServerOptions options;
  options.listen = NbdListenAddress::Tcp("127.0.0.1", 0);
  NbdServer server(AnyBlockDevice::Borrow(*memory_), options);
  ASSERT_TRUE(server.Start().ok());
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.address().ToString(), absl::StrCat("tcp:127.0.0.1:", server.port()));
  memory_->Fill(0, Bytes(4096, std::byte{0x42}));
  RawClient client(server.port());
  ASSERT_TRUE(client.connected());
  client.Go(/*structured=*/true);
  client.SendRequest(nbd::kCmdRead, 7, 0, 4096);
  const RawClient::Reply reply = client.ReadReply();
  EXPECT_EQ(reply.error, 0u);
  EXPECT_TRUE(reply.data == Bytes(4096, std::byte{0x42}));
  if (HaveProgram("nbdinfo")) {
    const ProgramResult info =
        RunProgram({"nbdinfo", "--size", absl::StrCat("nbd://127.0.0.1:", server.port())});
    EXPECT_PROGRAM_OK(info);
    EXPECT_THAT(info.output, HasSubstr("8388608"));
  }
}

// ---- Handshake ----

TEST_F(NbdServerTest, ExportNameEntersTransmissionWithAndWithoutZeroes) {
  auto server = ServeMemory({.export_name = "disk"});
  ASSERT_NE(server, nullptr);
  memory_->Fill(0, Bytes(512, std::byte{0x5a}));
  for (const bool no_zeroes : {true, false}) {
    RawClient client(socket_path());
    client.Greet(nbd::kClientFlagFixedNewstyle | (no_zeroes ? nbd::kClientFlagNoZeroes : 0));
    const std::string name = "disk";
    client.SendOption(nbd::kOptExportName, std::as_bytes(std::span(name)));
    const Bytes reply = client.Recv(no_zeroes ? 10 : 134);
    nbd::WireReader reader(reply);
    EXPECT_EQ(reader.U64(), kSize);
    const uint16_t flags = reader.U16();
    EXPECT_EQ(flags, nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua |
                         nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes | nbd::kFlagCanMultiConn |
                         nbd::kFlagSendCache);
    client.SendRequest(nbd::kCmdRead, 1, 0, 512);
    const RawClient::Reply read = client.ReadReply(512);
    EXPECT_EQ(read.cookie, 1u);
    EXPECT_EQ(read.error, 0u);
    EXPECT_TRUE(read.data == Bytes(512, std::byte{0x5a}));
  }
}

TEST_F(NbdServerTest, OptionsAreAnsweredAndUnknownOnesRefusedWithoutClosing) {
  auto server = ServeMemory({.export_name = "disk", .description = "scratch"});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Greet();
  const Bytes junk = {std::byte{1}, std::byte{2}, std::byte{3}};

  client.SendOption(999, junk);
  RawClient::OptionReply reply = client.ReadOptionReply();
  EXPECT_EQ(reply.option, 999u);
  EXPECT_EQ(reply.type, nbd::kRepErrUnsup);
  for (uint32_t option : {4u, 5u, 11u}) {  // PEEK, STARTTLS, extended headers
    client.SendOption(option);
    EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrUnsup) << option;
  }
  client.SendOption(nbd::kOptStructuredReply, junk);
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  client.SendOption(nbd::kOptList, junk);
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  // A name longer than the option data.
  client.SendOption(nbd::kOptGo, nbd::WireWriter().U32(100).String("disk").U16(0).data());
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrInvalid);
  client.SendOption(nbd::kOptInfo, RawClient::InfoRequest("other", {}));
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrUnknown);
  client.SendOption(123, Bytes(100 << 10));  // over the option size limit
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepErrTooBig);

  client.SendOption(nbd::kOptList);
  reply = client.ReadOptionReply();
  EXPECT_EQ(reply.type, nbd::kRepServer);
  nbd::WireReader server_reply(reply.data);
  const uint32_t name_length = server_reply.U32();
  EXPECT_EQ(server_reply.String(name_length), "disk");
  EXPECT_EQ(server_reply.String(server_reply.remaining()), "scratch");
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);

  client.SendOption(
      nbd::kOptInfo,
      RawClient::InfoRequest("disk", {nbd::kInfoName, nbd::kInfoDescription, nbd::kInfoBlockSize}));
  std::map<uint16_t, Bytes> infos;
  for (int i = 0; i < 8; ++i) {
    reply = client.ReadOptionReply();
    if (reply.type != nbd::kRepInfo) break;
    nbd::WireReader info(reply.data);
    const uint16_t type = info.U16();
    infos[type] = Bytes(reply.data.begin() + 2, reply.data.end());
  }
  EXPECT_EQ(reply.type, nbd::kRepAck);
  ASSERT_EQ(infos.size(), 4u);
  nbd::WireReader export_info(infos[nbd::kInfoExport]);
  EXPECT_EQ(export_info.U64(), kSize);
  nbd::WireReader sizes(infos[nbd::kInfoBlockSize]);
  EXPECT_EQ(sizes.U32(), 512u);
  EXPECT_EQ(sizes.U32(), 4096u);
  EXPECT_EQ(sizes.U32(), 32u << 20);
  EXPECT_EQ(nbd::WireReader(infos[nbd::kInfoName]).String(4), "disk");
  EXPECT_EQ(nbd::WireReader(infos[nbd::kInfoDescription]).String(7), "scratch");

  // Still negotiating: GO with the default (empty) name enters transmission.
  client.SendOption(nbd::kOptGo, RawClient::InfoRequest("", {}));
  do {
    reply = client.ReadOptionReply();
  } while (reply.type == nbd::kRepInfo);
  EXPECT_EQ(reply.type, nbd::kRepAck);
  client.SendRequest(nbd::kCmdFlush, 5, 0, 0);
  EXPECT_EQ(client.ReadReply().error, 0u);
}

TEST_F(NbdServerTest, AbortIsAcknowledgedThenClosed) {
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Greet();
  client.SendOption(nbd::kOptAbort);
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  EXPECT_TRUE(client.ServerClosed());
}

TEST_F(NbdServerTest, MalformedHandshakesCloseOnlyTheirOwnConnection) {
  auto server = ServeMemory({.export_name = "disk"});
  ASSERT_NE(server, nullptr);
  memory_->Fill(0, Bytes(512, std::byte{0x33}));
  RawClient bystander(socket_path());
  bystander.Go(/*structured=*/true);

  const std::vector<std::pair<std::string, std::function<void(RawClient&)>>> cases = {
      {"unknown client flags", [](RawClient& c) { c.Greet(1 << 5); }},
      {"bad option magic",
       [](RawClient& c) {
         c.Greet();
         c.Send(nbd::WireWriter().U64(0x1122334455667788).U32(nbd::kOptGo).U32(0));
       }},
      {"unknown export name",
       [](RawClient& c) {
         c.Greet();
         c.SendOption(nbd::kOptExportName, nbd::WireWriter().String("nope").data());
       }},
      {"export name too long",
       [](RawClient& c) {
         c.Greet();
         c.SendOption(nbd::kOptExportName, Bytes(100 << 10, std::byte{'a'}));
       }},
      {"too many options",
       [](RawClient& c) {
         c.Greet();
         for (int i = 0; i < 200; ++i) c.SendOption(1000);
       }},
      {"garbage", [](RawClient& c) { c.Send(RandomBytes(64, 9)); }},
  };
  for (const auto& [name, misbehave] : cases) {
    RawClient client(socket_path());
    misbehave(client);
    EXPECT_TRUE(client.ServerClosed()) << name;
  }
  // Clients that vanish halfway through a greeting or an option.
  for (size_t cut : {2u, 8u, 13u}) {
    RawClient client(socket_path());
    client.Greet();
    const nbd::WireWriter option =
        nbd::WireWriter().U64(nbd::kOptionMagic).U32(nbd::kOptGo).U32(10);
    client.Send(option.data().first(cut));
  }
  bystander.SendRequest(nbd::kCmdRead, 1, 0, 512);
  const RawClient::Reply reply = bystander.ReadReply();
  EXPECT_EQ(reply.error, 0u);
  EXPECT_TRUE(reply.data == Bytes(512, std::byte{0x33}));
  RawClient newcomer(socket_path());
  newcomer.Go(/*structured=*/false, "disk");
  newcomer.SendRequest(nbd::kCmdRead, 2, 0, 512);
  EXPECT_TRUE(newcomer.ReadReply(512).data == Bytes(512, std::byte{0x33}));
}

TEST_F(NbdServerTest, ConnectionsBeyondTheLimitAreClosed) {
  auto server = ServeMemory({.max_connections = 2});
  ASSERT_NE(server, nullptr);
  auto first = std::make_unique<RawClient>(socket_path());
  RawClient second(socket_path());
  first->Go(true);
  second.Go(true);
  RawClient third(socket_path());
  EXPECT_TRUE(third.ServerClosed());
  first.reset();
  ASSERT_TRUE(WaitUntil([&] { return server->connections() == 1; }));
  RawClient fourth(socket_path());
  fourth.Go(true);
  fourth.SendRequest(nbd::kCmdFlush, 1, 0, 0);
  EXPECT_EQ(fourth.ReadReply().error, 0u);
}

// ---- Requests ----

struct BadRequest {
  std::string name;
  uint16_t type;
  uint16_t flags;
  uint64_t offset;
  uint32_t length;
  uint32_t error;
};

class NbdErrorCodeTest : public NbdServerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(NbdErrorCodeTest, BadRequestsGetTheRightErrorAndTheConnectionStaysUsable) {
  const bool structured = GetParam();
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  const Bytes block0 = RandomBytes(512, 11);
  memory_->Fill(0, block0);
  RawClient client(socket_path());
  client.Go(structured);

  const uint64_t kHuge = ~uint64_t{0} - 511;  // offset + length overflows
  const std::vector<BadRequest> cases = {
      {"read at the end", nbd::kCmdRead, 0, kSize, 512, nbd::kEinval},
      {"read across the end", nbd::kCmdRead, 0, kSize - 512, 1024, nbd::kEinval},
      {"read wrapping around", nbd::kCmdRead, 0, kHuge, 1024, nbd::kEinval},
      {"write at the end", nbd::kCmdWrite, 0, kSize, 512, nbd::kEnospc},
      {"write wrapping around", nbd::kCmdWrite, 0, kHuge, 1024, nbd::kEnospc},
      {"trim across the end", nbd::kCmdTrim, 0, kSize - 512, 1024, nbd::kEnospc},
      {"zero at the end", nbd::kCmdWriteZeroes, 0, kSize, 512, nbd::kEnospc},
      {"misaligned read", nbd::kCmdRead, 0, 100, 512, nbd::kEinval},
      {"misaligned write", nbd::kCmdWrite, 0, 512, 100, nbd::kEinval},
      {"misaligned trim", nbd::kCmdTrim, 0, 512, 1000, nbd::kEinval},
      {"empty read", nbd::kCmdRead, 0, 0, 0, nbd::kEinval},
      {"flush with a range", nbd::kCmdFlush, 0, 512, 512, nbd::kEinval},
      {"unknown command", 42, 0, 0, 512, nbd::kEinval},
      {"block status, never negotiated", nbd::kCmdBlockStatus, 0, 0, 512, nbd::kEinval},
      {"cache across the end", nbd::kCmdCache, 0, kSize - 512, 1024, nbd::kEinval},
      {"misaligned cache", nbd::kCmdCache, 0, 512, 100, nbd::kEinval},
      {"REQ_ONE on a cache", nbd::kCmdCache, nbd::kCmdFlagReqOne, 0, 512, nbd::kEinval},
      {"unknown flag", nbd::kCmdRead, 1 << 6, 0, 512, nbd::kEinval},
      {"DF, never advertised", nbd::kCmdRead, 1 << 2, 0, 512, nbd::kEinval},
      {"NO_HOLE on a write", nbd::kCmdWrite, nbd::kCmdFlagNoHole, 0, 512, nbd::kEinval},
      {"read over the maximum payload", nbd::kCmdRead, 0, 0, (32 << 20) + 512, nbd::kEinval},
  };
  uint64_t cookie = 100;
  for (const BadRequest& bad : cases) {
    SCOPED_TRACE(bad.name);
    // A write's data follows its header whether or not the server wants it.
    const Bytes payload(bad.type == nbd::kCmdWrite ? bad.length : 0, std::byte{0xff});
    ASSERT_TRUE(client.SendRequest(bad.type, ++cookie, bad.offset, bad.length, bad.flags, payload));
    const RawClient::Reply reply = client.ReadReply(bad.type == nbd::kCmdRead ? bad.length : 0);
    EXPECT_EQ(reply.cookie, cookie);
    EXPECT_EQ(reply.error, bad.error);
    EXPECT_TRUE(reply.data.empty());
    if (structured) {
      EXPECT_EQ(reply.chunk_type, nbd::kReplyTypeError);
    }
    // Still in step: a good read follows.
    client.SendRequest(nbd::kCmdRead, ++cookie, 0, 512, nbd::kCmdFlagFua);
    const RawClient::Reply good = client.ReadReply(512);
    EXPECT_EQ(good.cookie, cookie);
    EXPECT_EQ(good.error, 0u);
    EXPECT_TRUE(good.data == block0);
  }
  EXPECT_TRUE(memory_->Contents() == [&] {
    Bytes expected(kSize);
    std::copy(block0.begin(), block0.end(), expected.begin());
    return expected;
  }());
}

TEST_P(NbdErrorCodeTest, DeviceErrorsReachTheClient) {
  const bool structured = GetParam();
  const Bytes original = RandomBytes(8192, 18);
  memory_->Fill(0, original);
  FaultInjectingDevice faulty(*memory_);
  faulty.AddRule({.ops = {Op::kRead}, .range = ByteRange{.offset = 0, .length = 4096}});
  faulty.AddRule({.ops = {Op::kWrite},
                  .range = ByteRange{.offset = kMiB, .length = 4096},
                  .error = ErrnoStatus(ENOSPC, "write", kMiB, 4096)});
  auto server = Serve(AnyBlockDevice::Borrow(faulty));
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Go(structured);

  client.SendRequest(nbd::kCmdRead, 1, 0, 4096);
  RawClient::Reply reply = client.ReadReply(4096);
  EXPECT_EQ(reply.error, nbd::kEio);
  EXPECT_TRUE(reply.data.empty());
  if (structured) {
    EXPECT_EQ(reply.chunk_type, nbd::kReplyTypeErrorOffset);
  }
  client.SendRequest(nbd::kCmdWrite, 2, kMiB, 4096, 0, Bytes(4096, std::byte{1}));
  EXPECT_EQ(client.ReadReply().error, nbd::kEnospc);
  client.SendRequest(nbd::kCmdRead, 3, 4096, 4096);
  reply = client.ReadReply(4096);
  EXPECT_EQ(reply.error, 0u);
  EXPECT_TRUE(reply.data == Slice(original, 4096, 4096));
}

INSTANTIATE_TEST_SUITE_P(Replies, NbdErrorCodeTest, ::testing::Bool(),
                         [](const auto& param) { return param.param ? "Structured" : "Simple"; });

TEST_F(NbdServerTest, OversizedWriteIsRefusedAndItsDataSkipped) {
  // A 1 MiB buffer budget makes the largest payload 1 MiB.
  auto server = ServeMemory({.max_in_flight_bytes = 1 << 20});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Greet();
  client.SendOption(nbd::kOptInfo, RawClient::InfoRequest("", {nbd::kInfoBlockSize}));
  for (RawClient::OptionReply reply = client.ReadOptionReply(); reply.type == nbd::kRepInfo;
       reply = client.ReadOptionReply()) {
    nbd::WireReader info(reply.data);
    if (info.U16() != nbd::kInfoBlockSize) continue;
    info.U32();
    info.U32();
    EXPECT_EQ(info.U32(), 1u << 20);
  }
  client.SendOption(nbd::kOptGo, RawClient::InfoRequest("", {}));
  while (client.ReadOptionReply().type == nbd::kRepInfo) {
  }
  const Bytes big = RandomBytes((1 << 20) + 4096, 12);
  client.SendRequest(nbd::kCmdWrite, 1, 0, static_cast<uint32_t>(big.size()), 0, big);
  EXPECT_EQ(client.ReadReply().error, nbd::kEinval);
  const Bytes small = RandomBytes(1 << 20, 13);
  client.SendRequest(nbd::kCmdWrite, 2, 0, 1 << 20, nbd::kCmdFlagFua, small);
  const RawClient::Reply reply = client.ReadReply();
  EXPECT_EQ(reply.cookie, 2u);
  EXPECT_EQ(reply.error, 0u);
  EXPECT_TRUE(Slice(memory_->Contents(), 0, 1 << 20) == small);
}

TEST_F(NbdServerTest, ReadOnlyExportRefusesChangesWithEperm) {
  const Bytes original = RandomBytes(kSize, 14);
  memory_->Fill(0, original);
  auto server = ServeMemory({.read_only = true});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  const uint16_t flags = client.Go(/*structured=*/true);
  EXPECT_EQ(flags & (nbd::kFlagReadOnly | nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes),
            nbd::kFlagReadOnly);
  client.SendRequest(nbd::kCmdWrite, 1, 0, 512, 0, Bytes(512));
  EXPECT_EQ(client.ReadReply().error, nbd::kEperm);
  client.SendRequest(nbd::kCmdTrim, 2, 0, 512);
  EXPECT_EQ(client.ReadReply().error, nbd::kEperm);
  client.SendRequest(nbd::kCmdWriteZeroes, 3, 0, 512, nbd::kCmdFlagFua);
  EXPECT_EQ(client.ReadReply().error, nbd::kEperm);
  client.SendRequest(nbd::kCmdFlush, 4, 0, 0);
  EXPECT_EQ(client.ReadReply().error, 0u);
  client.SendRequest(nbd::kCmdRead, 5, 4096, 4096);
  EXPECT_TRUE(client.ReadReply().data == Slice(original, 4096, 4096));
  EXPECT_TRUE(memory_->Contents() == original);
}

TEST_F(NbdServerTest, BadRequestMagicClosesOnlyThatConnection) {
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  RawClient good(socket_path());
  RawClient bad(socket_path());
  good.Go(true);
  bad.Go(true);
  bad.SendRequest(nbd::kCmdRead, 1, 0, 512, 0, {}, 0xdeadbeef);
  EXPECT_TRUE(bad.ServerClosed());
  const Bytes data = RandomBytes(4096, 15);
  good.SendRequest(nbd::kCmdWrite, 2, 8192, 4096, 0, data);
  EXPECT_EQ(good.ReadReply().error, 0u);
  good.SendRequest(nbd::kCmdRead, 3, 8192, 4096);
  EXPECT_TRUE(good.ReadReply().data == data);
  ASSERT_TRUE(WaitUntil([&] { return server->connections() == 1; }));
}

TEST_F(NbdServerTest, ClientVanishingMidWriteLosesNothingAcknowledged) {
  DelayDevice disk(*memory_, {.max_delay = std::chrono::microseconds(500)});
  auto server = Serve(AnyBlockDevice::Borrow(disk));
  ASSERT_NE(server, nullptr);
  RawClient other(socket_path());
  other.Go(true);
  {
    RawClient leaving(socket_path());
    leaving.Go(true);
    const Bytes acknowledged = RandomBytes(4096, 16);
    leaving.SendRequest(nbd::kCmdWrite, 1, 0, 4096, nbd::kCmdFlagFua, acknowledged);
    ASSERT_EQ(leaving.ReadReply().error, 0u);
    // Pipelined writes whose replies it never reads, then half a write.
    for (int i = 1; i <= 50; ++i)
      leaving.SendRequest(nbd::kCmdWrite, 1 + i, i * 4096, 4096, 0, RandomBytes(4096, 100 + i));
    leaving.SendRequest(nbd::kCmdWrite, 99, kMiB, 8192, 0, Bytes(4096, std::byte{0xee}));
  }
  const Bytes mine = RandomBytes(8192, 17);
  other.SendRequest(nbd::kCmdWrite, 1, 2 * kMiB, 8192, 0, mine);
  EXPECT_EQ(other.ReadReply().error, 0u);
  other.SendRequest(nbd::kCmdRead, 2, 2 * kMiB, 8192);
  EXPECT_TRUE(other.ReadReply().data == mine);
  ASSERT_TRUE(WaitUntil([&] { return server->connections() == 1; }));
  const Bytes contents = memory_->Contents();
  EXPECT_TRUE(Slice(contents, 0, 4096) == RandomBytes(4096, 16));
  EXPECT_TRUE(Slice(contents, kMiB, 8192) == Bytes(8192));  // the half write never landed
  other.SendRequest(nbd::kCmdRead, 3, 0, 4096);
  EXPECT_TRUE(other.ReadReply().data == RandomBytes(4096, 16));
}

TEST_F(NbdServerTest, ThousandsOfPipelinedRequestsWithBoundedDepth) {
  DelayDevice disk(*memory_, {.max_delay = std::chrono::microseconds(200)});
  CountingDevice counted(disk);
  auto server = Serve(AnyBlockDevice::Borrow(counted), {.max_in_flight_requests = 64});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Go(/*structured=*/true);
  constexpr int kBlocks = 2048;  // every 4 KiB block of the first 8 MiB
  std::vector<Bytes> patterns;
  for (int block = 0; block < kBlocks; ++block) patterns.push_back(RandomBytes(4096, 1000 + block));

  // Writes (with a flush after every fourth), then reads of everything written;
  // a second thread sends while this one takes the replies.
  for (const bool writing : {true, false}) {
    std::vector<std::pair<uint64_t, int>> requests;  // cookie, block (-1: flush)
    for (int block = 0; block < kBlocks; ++block) {
      requests.emplace_back(requests.size() + 1, block);
      if (writing && block % 4 == 3) requests.emplace_back(requests.size() + 1, -1);
    }
    BoundedThread sender([&] {
      for (const auto& [cookie, block] : requests) {
        bool sent;
        if (block < 0) {
          sent = client.SendRequest(nbd::kCmdFlush, cookie, 0, 0);
        } else if (writing) {
          sent =
              client.SendRequest(nbd::kCmdWrite, cookie, block * 4096ull, 4096, 0, patterns[block]);
        } else {
          sent = client.SendRequest(nbd::kCmdRead, cookie, block * 4096ull, 4096);
        }
        if (!sent) return;
      }
    });
    const std::map<uint64_t, int> blocks(requests.begin(), requests.end());
    std::set<uint64_t> seen;
    for (size_t i = 0; i < requests.size(); ++i) {
      const RawClient::Reply reply = client.ReadReply();
      const auto request = blocks.find(reply.cookie);
      const bool good = reply.error == 0 && request != blocks.end() &&
                        seen.insert(reply.cookie).second &&
                        (writing || reply.data == patterns[request->second]);
      if (!good) {
        ADD_FAILURE() << "bad reply for cookie " << reply.cookie << ", error " << reply.error;
        client.Abort();
        break;
      }
    }
    sender.Join();
    ASSERT_EQ(seen.size(), requests.size());
  }
  const Counts counts = counted.Snapshot();
  EXPECT_EQ(counts.submitted[Op::kWrite], uint64_t{kBlocks});
  EXPECT_EQ(counts.submitted[Op::kRead], uint64_t{kBlocks});
  EXPECT_EQ(counts.submitted[Op::kFlush], uint64_t{kBlocks / 4});
  EXPECT_LE(counts.max_total_in_flight, 64u);
  EXPECT_GT(counts.max_total_in_flight, 1u);  // pipelined indeed
}

TEST_F(NbdServerTest, StopAnswersEveryRequestAlreadyReceived) {
  DelayDevice disk(*memory_, {.min_delay = std::chrono::milliseconds(150),
                              .max_delay = std::chrono::milliseconds(150)});
  CountingDevice counted(disk);
  auto server = Serve(AnyBlockDevice::Borrow(counted));
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Go(/*structured=*/true);
  constexpr int kWrites = 16, kReads = 8;
  for (int i = 0; i < kWrites; ++i)
    client.SendRequest(nbd::kCmdWrite, i, i * 4096ull, 4096, nbd::kCmdFlagFua,
                       RandomBytes(4096, 200 + i));
  for (int i = 0; i < kReads; ++i) client.SendRequest(nbd::kCmdRead, 100 + i, kMiB, 4096);
  ASSERT_TRUE(WaitUntil([&] {
    const Counts counts = counted.Snapshot();
    return counts.submitted[Op::kWrite] + counts.submitted[Op::kRead] == kWrites + kReads;
  }));
  BoundedThread stopper([&] { server->Stop(); });
  std::set<uint64_t> answered;
  for (int i = 0; i < kWrites + kReads; ++i) {
    const RawClient::Reply reply = client.ReadReply();
    EXPECT_EQ(reply.error, 0u);
    answered.insert(reply.cookie);
  }
  EXPECT_EQ(answered.size(), size_t{kWrites + kReads});
  EXPECT_TRUE(client.ServerClosed());
  stopper.Join();
  EXPECT_EQ(counted.Snapshot().total_in_flight, 0u);
  const Bytes contents = memory_->Contents();
  for (int i = 0; i < kWrites; ++i)
    EXPECT_TRUE(Slice(contents, i * 4096ull, 4096) == RandomBytes(4096, 200 + i)) << i;
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
}

TEST_F(NbdServerTest, StopCutsOffAClientThatDoesNotTakeItsReplies) {
  CountingDevice counted(*memory_);
  auto server =
      Serve(AnyBlockDevice::Borrow(counted), {.drain_timeout = std::chrono::milliseconds(200)});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Go(/*structured=*/true);
  for (int i = 0; i < 64; ++i) client.SendRequest(nbd::kCmdRead, i, 0, 1 << 20);
  // Read and with more replies than the socket holds waiting to go out.
  ASSERT_TRUE(WaitUntil([&] { return counted.Snapshot().completed[Op::kRead] >= 16; }));
  const auto start = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(server->connections(), 0);
}

// ---- Addresses and sockets ----

TEST(NbdListenAddressTest, ParsesUnixAndTcpAddresses) {
  const auto parse = [](absl::string_view text) { return ParseNbdListenAddress(text); };
  auto unix_address = parse("unix:/run/blkclone/c.sock");
  ASSERT_TRUE(unix_address.ok());
  EXPECT_EQ(unix_address->kind, NbdListenAddress::Kind::kUnix);
  EXPECT_EQ(unix_address->path, "/run/blkclone/c.sock");
  for (const auto& [text, host, port] : std::vector<std::tuple<std::string, std::string, int>>{
           {"tcp:127.0.0.1:10809", "127.0.0.1", 10809},
           {"tcp:localhost:0", "localhost", 0},
           {"tcp:[::1]:65535", "::1", 65535},
           {"tcp::2000", "127.0.0.1", 2000},
           {"tcp:2001", "127.0.0.1", 2001},
           {"tcp:0.0.0.0:10809", "0.0.0.0", 10809}}) {
    auto address = parse(text);
    ASSERT_TRUE(address.ok()) << text << ": " << address.status();
    EXPECT_EQ(address->kind, NbdListenAddress::Kind::kTcp);
    EXPECT_EQ(address->host, host);
    EXPECT_EQ(address->port, port);
    EXPECT_EQ(*parse(address->ToString()), *address) << text;
  }
  for (const char* bad : {"", "nbd://x", "unix:", "tcp:", "tcp:host:", "tcp:host:65536",
                          "tcp:host:-1", "tcp:host:+80", "tcp:host:8o", "tcp:[::1", "tcp:[]:80",
                          "tcp:[::1]80", "tcp:::1:80", "udp:1.2.3.4:5"}) {
    const auto address = parse(bad);
    EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(parse(absl::StrCat("unix:/", std::string(120, 'x'))).ok());
}

TEST_F(NbdServerTest, UnixSocketFilesAreReplacedOnlyWhenStale) {
  {  // A socket left behind by a server that died.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    socket_path().copy(address.sun_path, sizeof(address.sun_path) - 1);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  NbdServer second(AnyBlockDevice::Borrow(*memory_),
                   {.listen = NbdListenAddress::Unix(socket_path())});
  EXPECT_EQ(second.Start().code(), absl::StatusCode::kAlreadyExists);
  server->Stop();
  EXPECT_FALSE(std::filesystem::exists(socket_path()));

  WriteFile(socket_path(), Bytes(3));
  NbdServer third(AnyBlockDevice::Borrow(*memory_),
                  {.listen = NbdListenAddress::Unix(socket_path())});
  EXPECT_EQ(third.Start().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(std::filesystem::exists(socket_path()));  // not ours to remove
}

TEST_F(NbdServerTest, RefusesDevicesAndOptionsNbdCannotDescribe) {
  auto huge_blocks = *MemoryDevice::Create({.size = 1 << 20, .logical_block_size = 128 << 10});
  NbdServer server(AnyBlockDevice::Borrow(*huge_blocks),
                   {.listen = NbdListenAddress::Unix(socket_path())});
  EXPECT_EQ(server.Start().code(), absl::StatusCode::kInvalidArgument);
  NbdServer no_clients(AnyBlockDevice::Borrow(*memory_),
                       {.listen = NbdListenAddress::Unix(socket_path()), .max_connections = 0});
  EXPECT_EQ(no_clients.Start().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(socket_path()));
}

}  // namespace
}  // namespace blkclone

// NbdServer's metadata contexts, block status and CACHE: raw conversations
// for the negotiation (every option shape and misstep, exact replies) and the
// answers, then real clients (nbdinfo --map, qemu-img map, nbdcopy, nbdsh).
#include <sys/stat.h>

#include <atomic>
#include <future>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "blkclone/internal/mutex.hpp"
#include "blkclone/nbd_server.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "bounded_wait.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbd_server_fixture.hpp"
#include "nlohmann/json.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using namespace testing;  // NOLINT: the fixture, the clients and the test helpers
using ::testing::ElementsAre;
using ::testing::Pair;

constexpr uint64_t kKiB = 1 << 10;

// NBD_REP_META_CONTEXT replies, as (context ID, name).
using ContextReplies = std::vector<std::pair<uint32_t, std::string>>;
// One block status chunk's descriptors, as (length, flags).
using Descriptors = std::vector<std::pair<uint32_t, uint32_t>>;

Bytes Data(const nbd::WireWriter& message) {
  return Bytes(message.data().begin(), message.data().end());
}

// The data of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
Bytes ContextQuery(absl::string_view export_name, const std::vector<std::string>& queries) {
  nbd::WireWriter data;
  data.U32(static_cast<uint32_t>(export_name.size()))
      .String(export_name)
      .U32(static_cast<uint32_t>(queries.size()));
  for (const std::string& query : queries)
    data.U32(static_cast<uint32_t>(query.size())).String(query);
  return Data(data);
}

// Sends a metadata context option; its META_CONTEXT replies, and in `final`
// the type of the reply that ended them.
ContextReplies AskContexts(RawClient& client, uint32_t option, std::span<const std::byte> data,
                           uint32_t* final = nullptr) {
  client.SendOption(option, data);
  ContextReplies contexts;
  for (int i = 0; i < 16; ++i) {
    RawClient::OptionReply reply = client.ReadOptionReply();
    EXPECT_EQ(reply.option, option);
    if (reply.type != nbd::kRepMetaContext) {
      if (final != nullptr) *final = reply.type;
      break;
    }
    nbd::WireReader reader(reply.data);
    const uint32_t id = reader.U32();
    contexts.emplace_back(id, reader.String(reader.remaining()));
  }
  return contexts;
}

// The option's only reply (an error or ACK, no contexts).
uint32_t OnlyReply(RawClient& client, uint32_t option, std::span<const std::byte> data) {
  uint32_t final = 0;
  EXPECT_THAT(AskContexts(client, option, data, &final), ElementsAre());
  return final;
}

// Greets, negotiates structured replies, selects `contexts` and enters
// transmission; returns the IDs the server gave them, by name.
std::map<std::string, uint32_t> GoWithContexts(RawClient& client,
                                               const std::vector<std::string>& contexts) {
  client.GreetStructured();
  uint32_t final = 0;
  std::map<std::string, uint32_t> ids;
  for (const auto& [id, name] :
       AskContexts(client, nbd::kOptSetMetaContext, ContextQuery("", contexts), &final))
    ids[name] = id;
  EXPECT_EQ(final, nbd::kRepAck);
  client.SendOption(nbd::kOptGo, RawClient::InfoRequest("", {}));
  while (client.ReadOptionReply().type == nbd::kRepInfo) {
  }
  return ids;
}

// A successful block status reply: each chunk's descriptors by context ID.
// Fails the test if a chunk is not a block status chunk or the last is not
// the only one flagged done (the fixture's reader stops at it).
std::map<uint32_t, Descriptors> StatusChunks(const RawClient::Reply& reply) {
  std::map<uint32_t, Descriptors> chunks;
  EXPECT_EQ(reply.error, 0u);
  for (const auto& [type, payload] : reply.chunks) {
    EXPECT_EQ(type, nbd::kReplyTypeBlockStatus);
    nbd::WireReader reader(payload);
    Descriptors& descriptors = chunks[reader.U32()];
    while (reader.remaining() >= 8) {
      const uint32_t length = reader.U32();
      descriptors.emplace_back(length, reader.U32());
    }
  }
  return chunks;
}

// Hydrated below `boundary`, not above: runs covering the range asked.
NbdDescribeHydration HydratedBelow(uint64_t boundary) {
  return [boundary](uint64_t offset, uint64_t length) {
    std::vector<NbdHydrationRun> runs;
    const uint64_t end = offset + length, split = std::clamp(boundary, offset, end);
    if (split > offset)
      runs.push_back({.offset = offset, .length = split - offset, .hydrated = true});
    if (end > split) runs.push_back({.offset = split, .length = end - split, .hydrated = false});
    return runs;
  };
}

constexpr uint32_t kHoleZero = nbd::kStateHole | nbd::kStateZero;

class NbdMetadataTest : public NbdServerTest {
 protected:
  // The memory device with data at [64 KiB, 128 KiB) and [1 MiB, 1 MiB + 4 KiB),
  // holes elsewhere.
  void WriteData() {
    ASSERT_TRUE(WriteAt(*memory_, 64 * kKiB, RandomBytes(64 * kKiB, 1)).ok());
    ASSERT_TRUE(WriteAt(*memory_, kMiB, RandomBytes(4 * kKiB, 2)).ok());
  }
  // base:allocation of [0, kSize) after WriteData.
  static Descriptors WrittenAllocation() {
    return {{64 * kKiB, kHoleZero},
            {64 * kKiB, 0},
            {kMiB - 128 * kKiB, kHoleZero},
            {4 * kKiB, 0},
            {kSize - kMiB - 4 * kKiB, kHoleZero}};
  }
};

// ---- Negotiation ----

TEST_F(NbdMetadataTest, ContextOptionsNeedStructuredRepliesFirst) {
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.Greet();
  const Bytes query = ContextQuery("", {"base:allocation"});
  EXPECT_EQ(OnlyReply(client, nbd::kOptListMetaContext, query), nbd::kRepErrInvalid);
  EXPECT_EQ(OnlyReply(client, nbd::kOptSetMetaContext, query), nbd::kRepErrInvalid);
  client.SendOption(nbd::kOptStructuredReply);
  EXPECT_EQ(client.ReadOptionReply().type, nbd::kRepAck);
  EXPECT_THAT(AskContexts(client, nbd::kOptSetMetaContext, query),
              ElementsAre(Pair(::testing::Ne(0u), "base:allocation")));
}

TEST_F(NbdMetadataTest, ListsTheContextsEachQueryFinds) {
  auto with_hook = ServeMemory({.export_name = "disk", .describe_hydration = HydratedBelow(0)});
  ASSERT_NE(with_hook, nullptr);
  RawClient client(socket_path());
  client.GreetStructured();
  const auto list = [&](const std::vector<std::string>& queries, absl::string_view name = "disk") {
    uint32_t final = 0;
    ContextReplies contexts =
        AskContexts(client, nbd::kOptListMetaContext, ContextQuery(name, queries), &final);
    EXPECT_EQ(final, nbd::kRepAck);
    return contexts;
  };
  // A list's IDs are zero: they cannot be used.
  EXPECT_THAT(list({}), ElementsAre(Pair(0u, "base:allocation"), Pair(0u, "blkclone:hydrated")));
  EXPECT_THAT(list({}, ""),
              ElementsAre(Pair(0u, "base:allocation"), Pair(0u, "blkclone:hydrated")));
  EXPECT_THAT(list({"base:"}), ElementsAre(Pair(0u, "base:allocation")));
  EXPECT_THAT(list({"blkclone:"}), ElementsAre(Pair(0u, "blkclone:hydrated")));
  EXPECT_THAT(list({"blkclone:hydrated", "base:allocation", "base:allocation"}),
              ElementsAre(Pair(0u, "base:allocation"), Pair(0u, "blkclone:hydrated")));
  // Unknown namespaces and names are ignored, as the protocol asks.
  EXPECT_THAT(list({"qemu:dirty-bitmap:x", "base:dirty", "blkclone:dirty", "x-a:"}), ElementsAre());
  EXPECT_EQ(OnlyReply(client, nbd::kOptListMetaContext, ContextQuery("disk", {"nocolon"})),
            nbd::kRepErrInvalid);
  EXPECT_EQ(OnlyReply(client, nbd::kOptListMetaContext, ContextQuery("disk", {":allocation"})),
            nbd::kRepErrInvalid);
  EXPECT_EQ(OnlyReply(client, nbd::kOptListMetaContext, ContextQuery("other", {})),
            nbd::kRepErrUnknown);
  with_hook->Stop();

  // Without a hydration hook there is no blkclone:hydrated.
  auto plain = ServeMemory();
  ASSERT_NE(plain, nullptr);
  RawClient second(socket_path());
  second.GreetStructured();
  EXPECT_THAT(AskContexts(second, nbd::kOptListMetaContext, ContextQuery("", {})),
              ElementsAre(Pair(0u, "base:allocation")));
  EXPECT_THAT(AskContexts(second, nbd::kOptSetMetaContext, ContextQuery("", {"blkclone:hydrated"})),
              ElementsAre());
}

TEST_F(NbdMetadataTest, MalformedContextOptionsAreRefusedAndTheClientGoesOn) {
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  client.GreetStructured();
  Bytes trailing = ContextQuery("", {"base:allocation"});
  trailing.push_back(std::byte{0});
  const std::vector<std::pair<std::string, Bytes>> cases = {
      {"empty", {}},
      {"no query count", Data(nbd::WireWriter().U32(0))},
      {"name past the end", Data(nbd::WireWriter().U32(8).String("di"))},
      {"query count past the end", Data(nbd::WireWriter().U32(0).U32(1000).U32(0))},
      {"query past the end", Data(nbd::WireWriter().U32(0).U32(1).U32(20).String("base:"))},
      {"bytes after the queries", trailing},
      {"query over 4096 bytes", ContextQuery("", {"base:" + std::string(4096, 'a')})},
  };
  for (const auto& [name, data] : cases) {
    for (const uint32_t option : {nbd::kOptListMetaContext, nbd::kOptSetMetaContext})
      EXPECT_EQ(OnlyReply(client, option, data), nbd::kRepErrInvalid)
          << name << ", option " << option;
  }
  EXPECT_THAT(AskContexts(client, nbd::kOptSetMetaContext, ContextQuery("", {"base:allocation"})),
              ElementsAre(Pair(::testing::Ne(0u), "base:allocation")));
}

TEST_F(NbdMetadataTest, EachSetReplacesTheSelectionEvenWhenItFails) {
  auto server = ServeMemory({.export_name = "disk", .describe_hydration = HydratedBelow(0)});
  ASSERT_NE(server, nullptr);
  const auto block_status_error = [&](const std::vector<Bytes>& sets) {
    RawClient client(socket_path());
    client.GreetStructured();
    for (const Bytes& set : sets) AskContexts(client, nbd::kOptSetMetaContext, set);
    client.SendOption(nbd::kOptGo, RawClient::InfoRequest("disk", {}));
    while (client.ReadOptionReply().type == nbd::kRepInfo) {
    }
    client.SendRequest(nbd::kCmdBlockStatus, 1, 0, 4096);
    return client.ReadReply().error;
  };
  const Bytes both = ContextQuery("disk", {"base:allocation", "blkclone:hydrated"});
  EXPECT_EQ(block_status_error({both}), 0u);
  EXPECT_EQ(block_status_error({both, ContextQuery("disk", {"base:"})}), nbd::kEinval)
      << "base: alone selects nothing in a SET";
  EXPECT_EQ(block_status_error({both, ContextQuery("other", {"base:allocation"})}), nbd::kEinval)
      << "a SET for an unknown export clears the selection";
  EXPECT_EQ(block_status_error({both, Bytes{std::byte{1}}}), nbd::kEinval)
      << "a malformed SET clears the selection";
  EXPECT_EQ(block_status_error({}), nbd::kEinval) << "no SET at all";

  RawClient client(socket_path());
  client.GreetStructured();
  const ContextReplies ids = AskContexts(client, nbd::kOptSetMetaContext, both);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0].first, ids[1].first) << "context IDs must be unique";
  EXPECT_NE(ids[0].first, 0u);
  EXPECT_NE(ids[1].first, 0u);
}

// ---- Block status ----

TEST_F(NbdMetadataTest, BlockStatusAnswersEveryNegotiatedContext) {
  WriteData();
  auto server = ServeMemory({.describe_hydration = HydratedBelow(2 * kMiB)});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  std::map<std::string, uint32_t> ids =
      GoWithContexts(client, {"base:allocation", "blkclone:hydrated"});
  ASSERT_EQ(ids.size(), 2u);
  const uint32_t allocation = ids["base:allocation"], hydrated = ids["blkclone:hydrated"];

  client.SendRequest(nbd::kCmdBlockStatus, 1, 0, kSize);
  RawClient::Reply reply = client.ReadReply();
  EXPECT_EQ(reply.cookie, 1u);
  std::map<uint32_t, Descriptors> chunks = StatusChunks(reply);
  EXPECT_EQ(chunks[allocation], WrittenAllocation());
  EXPECT_THAT(chunks[hydrated],
              ElementsAre(Pair(2 * kMiB, nbd::kStateHydrated), Pair(kSize - 2 * kMiB, 0u)));
  EXPECT_EQ(chunks.size(), 2u);

  // A part, with FUA (valid on every command) and REQ_ONE: one descriptor each.
  client.SendRequest(nbd::kCmdBlockStatus, 2, 96 * kKiB, 4 * kMiB,
                     nbd::kCmdFlagReqOne | nbd::kCmdFlagFua);
  chunks = StatusChunks(client.ReadReply());
  EXPECT_THAT(chunks[allocation], ElementsAre(Pair(32 * kKiB, 0u)));
  EXPECT_THAT(chunks[hydrated], ElementsAre(Pair(2 * kMiB - 96 * kKiB, nbd::kStateHydrated)));

  struct Bad {
    std::string name;
    uint64_t offset;
    uint32_t length;
    uint16_t flags;
  };
  for (const Bad& bad :
       {Bad{"past the end", kSize, 512, 0}, Bad{"across the end", kSize - 512, 1024, 0},
        Bad{"misaligned", 100, 512, 0}, Bad{"empty", 0, 0, 0},
        Bad{"NO_HOLE", 0, 512, nbd::kCmdFlagNoHole}}) {
    client.SendRequest(nbd::kCmdBlockStatus, 3, bad.offset, bad.length, bad.flags);
    reply = client.ReadReply();
    EXPECT_EQ(reply.error, nbd::kEinval) << bad.name;
    EXPECT_EQ(reply.chunk_type, nbd::kReplyTypeError) << bad.name;
  }
}

TEST_F(NbdMetadataTest, OneContextAloneIsAnswered) {
  WriteData();
  auto server = ServeMemory({.describe_hydration = HydratedBelow(kMiB)});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  const std::map<std::string, uint32_t> ids = GoWithContexts(client, {"blkclone:hydrated"});
  ASSERT_EQ(ids.size(), 1u);
  client.SendRequest(nbd::kCmdBlockStatus, 1, 0, kSize);
  const std::map<uint32_t, Descriptors> chunks = StatusChunks(client.ReadReply());
  EXPECT_THAT(chunks, ElementsAre(Pair(
                          ids.at("blkclone:hydrated"),
                          ElementsAre(Pair(kMiB, nbd::kStateHydrated), Pair(kSize - kMiB, 0u)))));
}

TEST_F(NbdMetadataTest, ADeviceThatCannotTellIsAllData) {
  auto opaque = *MemoryDevice::Create({.size = kSize, .caps = {.block_status = false}});
  auto server = Serve(AnyBlockDevice::Borrow(*opaque));
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  const std::map<std::string, uint32_t> ids = GoWithContexts(client, {"base:allocation"});
  client.SendRequest(nbd::kCmdBlockStatus, 1, 4096, 65536);
  EXPECT_THAT(StatusChunks(client.ReadReply()),
              ElementsAre(Pair(ids.at("base:allocation"), ElementsAre(Pair(65536u, 0u)))));
}

TEST_F(NbdMetadataTest, WrongAnswersAndDeviceErrorsReachTheClientAsEio) {
  FaultInjectingDevice faulty(*memory_);
  faulty.AddRule({.ops = {Op::kBlockStatus}, .range = ByteRange{.offset = kMiB, .length = 4096}});
  // Leaves out the last block of any range it describes.
  auto server = Serve(AnyBlockDevice::Borrow(faulty),
                      {.describe_hydration = [](uint64_t offset, uint64_t length) {
                        return std::vector<NbdHydrationRun>{
                            {.offset = offset, .length = length - 512, .hydrated = true}};
                      }});
  ASSERT_NE(server, nullptr);
  RawClient allocation(socket_path());
  GoWithContexts(allocation, {"base:allocation"});
  allocation.SendRequest(nbd::kCmdBlockStatus, 1, kMiB, 8192);
  RawClient::Reply reply = allocation.ReadReply();
  EXPECT_EQ(reply.error, nbd::kEio);
  EXPECT_EQ(reply.chunk_type, nbd::kReplyTypeErrorOffset);
  allocation.SendRequest(nbd::kCmdBlockStatus, 2, 0, 8192);
  EXPECT_EQ(allocation.ReadReply().error, 0u) << "the connection stays usable";

  RawClient hydration(socket_path());
  GoWithContexts(hydration, {"blkclone:hydrated", "base:allocation"});
  hydration.SendRequest(nbd::kCmdBlockStatus, 1, 0, 8192);
  reply = hydration.ReadReply();
  EXPECT_EQ(reply.error, nbd::kEio);
  ASSERT_EQ(reply.chunks.size(), 1u) << "no chunk of a context may go out with the error";
  nbd::WireReader error(reply.chunks[0].second);
  error.U32();
  EXPECT_THAT(error.String(error.U16()),
              ::testing::HasSubstr("the hydration map does not describe"));
}

TEST_F(NbdMetadataTest, LongAnswersStopAtTheDescriptorLimit) {
  // Hydrated and not in turns of 4 KiB: 256 runs in 1 MiB. A 1 KiB budget
  // allows 64 descriptors per context with two contexts.
  auto server = ServeMemory(
      {.max_in_flight_bytes = 1024, .describe_hydration = [](uint64_t offset, uint64_t length) {
         std::vector<NbdHydrationRun> runs;
         for (uint64_t at = offset; at < offset + length; at += 4096)
           runs.push_back({.offset = at, .length = 4096, .hydrated = at / 4096 % 2 == 0});
         return runs;
       }});
  ASSERT_NE(server, nullptr);
  RawClient client(socket_path());
  const std::map<std::string, uint32_t> ids =
      GoWithContexts(client, {"base:allocation", "blkclone:hydrated"});
  client.SendRequest(nbd::kCmdBlockStatus, 1, 0, kMiB);
  std::map<uint32_t, Descriptors> chunks = StatusChunks(client.ReadReply());
  const Descriptors& hydrated = chunks[ids.at("blkclone:hydrated")];
  ASSERT_EQ(hydrated.size(), 64u);
  for (size_t i = 0; i < hydrated.size(); ++i)
    EXPECT_EQ(hydrated[i], std::make_pair(4096u, i % 2 == 0 ? nbd::kStateHydrated : 0u)) << i;
  EXPECT_THAT(chunks[ids.at("base:allocation")], ElementsAre(Pair(kMiB, kHoleZero)));
}

// ---- CACHE ----

TEST_F(NbdMetadataTest, CacheRunsTheHookAsideAndReportsItsFailure) {
  std::promise<void> open_gate;
  const std::shared_future<void> gate = open_gate.get_future().share();
  internal::Mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> asked;
  auto server = ServeMemory({.hydrate_range = [&](uint64_t offset, uint64_t length) {
    {
      internal::MutexLock lock(mu);
      asked.emplace_back(offset, length);
    }
    if (gate.wait_for(kWaitDeadline) != std::future_status::ready)
      return absl::DeadlineExceededError("the test never opened the gate");
    return offset == kMiB ? absl::UnavailableError("the source is gone") : absl::OkStatus();
  }});
  ASSERT_NE(server, nullptr);
  const Bytes block0 = RandomBytes(512, 3);
  memory_->Fill(0, block0);
  RawClient client(socket_path());
  const uint16_t flags = client.Go(/*structured=*/true);
  EXPECT_NE(flags & nbd::kFlagSendCache, 0);
  client.SendRequest(nbd::kCmdCache, 1, 0, 64 * kKiB);
  client.SendRequest(nbd::kCmdCache, 2, kMiB, 64 * kKiB, nbd::kCmdFlagFua);
  ASSERT_TRUE(WaitUntil([&] {
    internal::MutexLock lock(mu);
    return asked.size() == 2;
  }));
  // Both hooks wait, and a read still gets through.
  client.SendRequest(nbd::kCmdRead, 3, 0, 512);
  RawClient::Reply reply = client.ReadReply();
  EXPECT_EQ(reply.cookie, 3u);
  EXPECT_TRUE(reply.data == block0);
  open_gate.set_value();
  std::map<uint64_t, RawClient::Reply> replies;
  for (int i = 0; i < 2; ++i) {
    reply = client.ReadReply();
    replies[reply.cookie] = reply;
  }
  EXPECT_EQ(replies[1].error, 0u);
  EXPECT_EQ(replies[2].error, nbd::kEio);
  EXPECT_EQ(replies[2].chunk_type, nbd::kReplyTypeErrorOffset);
  internal::MutexLock lock(mu);
  EXPECT_THAT(asked, ::testing::UnorderedElementsAre(Pair(0u, 64 * kKiB), Pair(kMiB, 64 * kKiB)));
}

TEST_F(NbdMetadataTest, CacheWithoutAHookSucceedsHavingDoneNothing) {
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  for (const bool structured : {false, true}) {
    RawClient client(socket_path());
    EXPECT_NE(client.Go(structured) & nbd::kFlagSendCache, 0);
    client.SendRequest(nbd::kCmdCache, 1, 0, kSize);
    EXPECT_EQ(client.ReadReply().error, 0u);
  }
  EXPECT_TRUE(memory_->Contents() == Bytes(kSize));
}

// ---- Real clients ----

TEST_F(NbdMetadataTest, NbdinfoMapsAllocationAndHydration) {
  REQUIRE_PROGRAM("nbdinfo");
  WriteData();
  auto server = ServeMemory({.describe_hydration = HydratedBelow(3 * kMiB)});
  ASSERT_NE(server, nullptr);
  const auto map = [&](const std::string& context) {
    const ProgramResult result = RunProgram({"nbdinfo", "--json", "--map=" + context, Uri()});
    EXPECT_PROGRAM_OK(result);
    Descriptors extents;
    for (const nlohmann::json& extent : ParseJson(result.output))
      extents.emplace_back(extent.value("length", 0u), extent.value("type", 0u));
    return extents;
  };
  EXPECT_EQ(map("base:allocation"), WrittenAllocation());
  EXPECT_THAT(map("blkclone:hydrated"),
              ElementsAre(Pair(3 * kMiB, nbd::kStateHydrated), Pair(kSize - 3 * kMiB, 0u)));
}

TEST_F(NbdMetadataTest, QemuImgMapsTheHoles) {
  REQUIRE_PROGRAM("qemu-img");
  WriteData();
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  const ProgramResult result = RunProgram({"qemu-img", "map", "--output=json", Uri()});
  EXPECT_PROGRAM_OK(result);
  std::vector<std::tuple<uint64_t, uint64_t, bool>> extents;
  for (const nlohmann::json& extent : ParseJson(result.output))
    extents.emplace_back(extent.value("start", uint64_t{0}), extent.value("length", uint64_t{0}),
                         extent.value("data", true));
  EXPECT_THAT(extents, ElementsAre(std::tuple(uint64_t{0}, 64 * kKiB, false),
                                   std::tuple(64 * kKiB, 64 * kKiB, true),
                                   std::tuple(128 * kKiB, kMiB - 128 * kKiB, false),
                                   std::tuple(kMiB, 4 * kKiB, true),
                                   std::tuple(kMiB + 4 * kKiB, kSize - kMiB - 4 * kKiB, false)));
}

TEST_F(NbdMetadataTest, NbdcopyWritesOnlyTheData) {
  REQUIRE_PROGRAM("nbdcopy");
  WriteData();
  auto server = ServeMemory();
  ASSERT_NE(server, nullptr);
  EXPECT_PROGRAM_OK(RunProgram({"nbdcopy", Uri(), File("copy.img")}));
  EXPECT_TRUE(ReadFile(File("copy.img")) == memory_->Contents());
  struct stat st {};
  ASSERT_EQ(::stat(File("copy.img").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kMiB)
      << "nbdcopy wrote the holes: the copy is not sparse";
}

TEST_F(NbdMetadataTest, NbdshCachesThroughTheHook) {
  REQUIRE_NBDSH();
  internal::Mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> asked;
  auto server = ServeMemory({.hydrate_range = [&](uint64_t offset, uint64_t length) {
    internal::MutexLock lock(mu);
    asked.emplace_back(offset, length);
    return absl::OkStatus();
  }});
  ASSERT_NE(server, nullptr);
  EXPECT_PROGRAM_OK(RunNbdsh("assert h.can_cache()\nh.cache(2 * 2**20, 2**20)"));
  internal::MutexLock lock(mu);
  EXPECT_THAT(asked, ElementsAre(Pair(kMiB, 2 * kMiB)));
}

}  // namespace
}  // namespace blkclone

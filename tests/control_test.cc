// The control interface (clone-semantics "Control interface"): every rule of
// table lines, messages, sizes and the three status forms, as tables of cases.
#include "blkclone/control.hpp"

#include <optional>
#include <string>
#include <vector>

#include "blkclone/hydrator.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blkclone {
namespace {

using ::testing::HasSubstr;

struct TableCase {
  std::string line;
  CloneTable expected;
};

class ParseTableTest : public ::testing::TestWithParam<TableCase> {};

TEST_P(ParseTableTest, Parses) {
  absl::StatusOr<CloneTable> table = ParseTable(GetParam().line);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(*table, GetParam().expected);
  // Normalising loses nothing.
  absl::StatusOr<CloneTable> again = ParseTable(FormatTable(*table));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *table);
}

CloneTable Table(uint64_t region_sectors) {
  return CloneTable{.metadata_device = "/m",
                    .destination_device = "/d",
                    .source_device = "/s",
                    .region_sectors = region_sectors};
}

template <class F>
CloneTable With(CloneTable table, F change) {
  change(table);
  return table;
}

INSTANTIATE_TEST_SUITE_P(
    Valid, ParseTableTest,
    ::testing::Values(
        // The kernel documentation's example.
        TableCase{"0 1048576000 clone /m /d /s 8 1 no_hydration", With(Table(8),
                                                                       [](auto& row) {
                                                                         row.length_sectors =
                                                                             1048576000;
                                                                         row.no_hydration = true;
                                                                       })},
        TableCase{"clone /m /d /s 8", Table(8)}, TableCase{"  clone\t/m /d  /s 128 \n", Table(128)},
        TableCase{"clone /m /d /s 2097152", Table(2097152)},
        TableCase{"clone /m /d /s 8 0", Table(8)}, TableCase{"clone /m /d /s 8 0 0", Table(8)},
        TableCase{"clone /m /d /s 8 1 NO_DISCARD_PASSDOWN",
                  With(Table(8), [](auto& row) { row.no_discard_passdown = true; })},
        TableCase{"clone /m /d /s 64 2 no_discard_passdown no_hydration 4 hydration_threshold 0 "
                  "hydration_batch_size 16",
                  With(Table(64),
                       [](auto& row) {
                         row.no_hydration = row.no_discard_passdown = true;
                         row.hydration_threshold = 0;
                         row.hydration_batch_size = 16;
                       })},
        TableCase{"clone /m /d /s 8 0 2 Hydration_Batch_Size 4294967295",
                  With(Table(8), [](auto& row) { row.hydration_batch_size = 4294967295; })}));

struct ErrorCase {
  std::string input;
  std::string message;  // a part of the error message
};

class TableErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(TableErrorTest, NamesArgumentAndProblem) {
  absl::StatusOr<CloneTable> table = ParseTable(GetParam().input);
  ASSERT_FALSE(table.ok()) << GetParam().input;
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(table.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Invalid, TableErrorTest,
    ::testing::Values(
        ErrorCase{"", "table line: empty"},
        ErrorCase{"linear /dev/sda 0", "target type linear: not clone"},
        ErrorCase{"0 100 linear /dev/sda 0", "target type 0: not clone"},
        ErrorCase{"5 100 clone /m /d /s 8", "start sector 5: must be 0"},
        ErrorCase{"0 0 clone /m /d /s 8", "length 0: must be at least 1"},
        ErrorCase{"clone /m /d /s",
                  "clone: expected <metadata dev> <destination dev> <source "
                  "dev> <region size>, got 3 argument(s)"},
        ErrorCase{"clone", "got 0 argument(s)"},
        ErrorCase{"clone /m /d /s abc", "region size abc: not a number"},
        ErrorCase{"clone /m /d /s -8", "region size -8: not a number"},
        ErrorCase{"clone /m /d /s 0", "region size 0: must be at least 1"},
        ErrorCase{"clone /m /d /s 3000", "region size 3000: not a power of two"},
        ErrorCase{"clone /m /d /s 4", "region size 4: less than 4 KiB"},
        ErrorCase{"clone /m /d /s 4194304", "region size 4194304: more than 1 GiB"},
        ErrorCase{"clone /m /d /s 36028797018963968",  // 2^55 sectors: 2^64 bytes
                  "region size 36028797018963968: more than 1 GiB"},
        ErrorCase{"clone /m /d /s 36028797018963969",
                  "region size 36028797018963969: not a power of two"},
        ErrorCase{"clone /m /d /s 99999999999999999999",
                  "region size 99999999999999999999: too "
                  "large"},
        ErrorCase{"clone /m /d /s 8 x", "feature count x: not a number"},
        ErrorCase{"clone /m /d /s 8 2 no_hydration", "feature count 2: only 1 argument(s) follow"},
        ErrorCase{"clone /m /d /s 8 1 fast",
                  "feature fast: unknown (known: no_hydration, "
                  "no_discard_passdown)"},
        ErrorCase{"clone /m /d /s 8 2 no_hydration no_hydration",
                  "feature no_hydration: given "
                  "twice"},
        ErrorCase{"clone /m /d /s 8 0 x", "core argument count x: not a number"},
        ErrorCase{"clone /m /d /s 8 0 3 hydration_threshold 1 x", "core argument count 3: odd"},
        ErrorCase{"clone /m /d /s 8 0 4 hydration_threshold 1",
                  "core argument count 4: only 2 "
                  "argument(s) follow"},
        ErrorCase{"clone /m /d /s 8 0 2 speed 1", "core argument speed: unknown"},
        ErrorCase{"clone /m /d /s 8 0 2 hydration_threshold -1",
                  "hydration_threshold -1: not a "
                  "number"},
        ErrorCase{"clone /m /d /s 8 0 2 hydration_threshold 4294967296",
                  "hydration_threshold 4294967296: must be at most 4294967295"},
        ErrorCase{"clone /m /d /s 8 0 2 hydration_batch_size 0",
                  "hydration_batch_size 0: must be "
                  "at least 1"},
        ErrorCase{"clone /m /d /s 8 0 4 hydration_threshold 1 hydration_threshold 2",
                  "core argument hydration_threshold: given twice"},
        ErrorCase{"clone /m /d /s 8 0 0 extra",
                  "argument extra: unexpected after the core "
                  "arguments"}));

TEST(ParseTableTest, AcceptsWordsAsACommandLineGivesThem) {
  const std::vector<std::string> words = {"clone", "/m", "/d", "/s", "8", "1", "no_hydration"};
  absl::StatusOr<CloneTable> table = ParseTable(words);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_TRUE(table->no_hydration);
  EXPECT_EQ(table->region_size(), 4096u);
}

TEST(FormatTableTest, PrintsAsDmsetupTableDoes) {
  EXPECT_EQ(FormatTable(Table(8)),
            "clone /m /d /s 8 0 4 hydration_threshold 1 hydration_batch_size 1");
  EXPECT_EQ(FormatTable(With(Table(64),
                             [](auto& row) {
                               row.length_sectors = 2048;
                               row.no_hydration = row.no_discard_passdown = true;
                               row.hydration_threshold = 8;
                             })),
            "0 2048 clone /m /d /s 64 2 no_hydration no_discard_passdown 4 hydration_threshold 8 "
            "hydration_batch_size 1");
}

TEST(CheckTableLengthTest, LengthMustEqualTheSourceSize) {
  EXPECT_TRUE(CheckTableLength(Table(8), 12345 * 512).ok());
  const CloneTable table = With(Table(8), [](auto& row) { row.length_sectors = 2048; });
  EXPECT_TRUE(CheckTableLength(table, 2048 * 512).ok());
  absl::Status status = CheckTableLength(table, 4096 * 512);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("length 2048: the source /s has 4096 sectors (2097152 bytes)"));
}

struct MessageCase {
  std::string line;
  ControlMessage::Kind kind;
  uint64_t value = 0;
};

class ParseMessageTest : public ::testing::TestWithParam<MessageCase> {};

TEST_P(ParseMessageTest, Parses) {
  absl::StatusOr<ControlMessage> message = ParseMessage(GetParam().line);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->kind, GetParam().kind);
  EXPECT_EQ(message->value, GetParam().value);
}

using Kind = ControlMessage::Kind;
INSTANTIATE_TEST_SUITE_P(
    Valid, ParseMessageTest,
    ::testing::Values(MessageCase{"enable_hydration", Kind::kEnableHydration},
                      MessageCase{"DISABLE_HYDRATION", Kind::kDisableHydration},
                      MessageCase{"restart_hydration", Kind::kRestartHydration},
                      MessageCase{"hydration_threshold 0", Kind::kHydrationThreshold, 0},
                      MessageCase{"hydration_threshold 64", Kind::kHydrationThreshold, 64},
                      MessageCase{"hydration_batch_size 16", Kind::kHydrationBatchSize, 16},
                      MessageCase{"rate_limit 0", Kind::kRateLimit, 0},
                      MessageCase{"rate_limit 100M", Kind::kRateLimit, 100 << 20},
                      MessageCase{"rate_limit 1GiB", Kind::kRateLimit, 1 << 30}));

TEST(ParseMessageTest, RetryPolicy) {
  absl::StatusOr<ControlMessage> message = ParseMessage("retry_policy 3 10 1000");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->kind, Kind::kRetryPolicy);
  EXPECT_EQ(message->retry_max_failures, 3u);
  EXPECT_EQ(message->retry_first_delay, std::chrono::milliseconds(10));
  EXPECT_EQ(message->retry_max_delay, std::chrono::milliseconds(1000));
}

class MessageErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(MessageErrorTest, NamesArgumentAndProblem) {
  absl::StatusOr<ControlMessage> message = ParseMessage(GetParam().input);
  ASSERT_FALSE(message.ok()) << GetParam().input;
  EXPECT_EQ(message.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(message.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Invalid, MessageErrorTest,
    ::testing::Values(
        ErrorCase{"", "message: empty"},
        ErrorCase{"speed_up", "message speed_up: unknown (known: enable_hydration"},
        ErrorCase{"enable_hydration now", "enable_hydration: expected no argument, got 1"},
        ErrorCase{"restart_hydration 1 2", "restart_hydration: expected no argument, got 2"},
        ErrorCase{"hydration_threshold", "hydration_threshold: expected <regions>, got 0"},
        ErrorCase{"hydration_threshold 1 2", "hydration_threshold: expected <regions>, got 2"},
        ErrorCase{"hydration_threshold x", "hydration_threshold x: not a number"},
        ErrorCase{"hydration_threshold 4294967296", "must be at most 4294967295"},
        ErrorCase{"hydration_batch_size 0", "hydration_batch_size 0: must be at least 1"},
        ErrorCase{"rate_limit", "rate_limit: expected <bytes per second>, got 0"},
        ErrorCase{"rate_limit 10X", "rate_limit 10X: unknown unit X (use K, M, G or T)"},
        ErrorCase{"rate_limit fast", "rate_limit fast: not a size"},
        ErrorCase{"retry_policy 3 10",
                  "retry_policy: expected <max failures> <first delay ms> "
                  "<max delay ms>, got 2"},
        ErrorCase{"retry_policy 0 10 100", "retry_policy max failures 0: must be at least 1"},
        ErrorCase{"retry_policy 3 x 100", "retry_policy first delay x: not a number"},
        ErrorCase{"retry_policy 3 100 10",
                  "retry_policy max delay 10: less than the first delay "
                  "100"}));

struct SizeCase {
  std::string text;
  uint64_t bytes;
};

class ParseSizeTest : public ::testing::TestWithParam<SizeCase> {};

TEST_P(ParseSizeTest, Parses) {
  absl::StatusOr<uint64_t> bytes = ParseSize("size", GetParam().text);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, GetParam().bytes);
}

INSTANTIATE_TEST_SUITE_P(Valid, ParseSizeTest,
                         ::testing::Values(SizeCase{"0", 0}, SizeCase{"512", 512},
                                           SizeCase{"512B", 512}, SizeCase{"64K", 64 << 10},
                                           SizeCase{"64k", 64 << 10}, SizeCase{"64KiB", 64 << 10},
                                           SizeCase{"3M", 3 << 20}, SizeCase{"2G", 2ull << 30},
                                           SizeCase{"1T", 1ull << 40},
                                           SizeCase{"16777215T", 16777215ull << 40}));

class SizeErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(SizeErrorTest, NamesArgumentAndProblem) {
  absl::StatusOr<uint64_t> bytes = ParseSize("--region-size", GetParam().input);
  ASSERT_FALSE(bytes.ok()) << GetParam().input;
  EXPECT_THAT(std::string(bytes.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(Invalid, SizeErrorTest,
                         ::testing::Values(ErrorCase{"", "--region-size: missing value"},
                                           ErrorCase{"K", "--region-size K: not a size"},
                                           ErrorCase{"-1", "--region-size -1: not a size"},
                                           ErrorCase{"1X", "--region-size 1X: unknown unit X"},
                                           ErrorCase{"1KB", "--region-size 1KB: unknown unit KB"},
                                           ErrorCase{"1 K", "--region-size 1 K: unknown unit  K"},
                                           ErrorCase{"16777216T",
                                                     "--region-size 16777216T: too large"},
                                           ErrorCase{"99999999999999999999", "too large"}));

TEST(ParseNumberTest, ChecksBounds) {
  EXPECT_EQ(*ParseNumber("n", "7", 1, 10), 7u);
  EXPECT_EQ(ParseNumber("--threshold", "+7").status().message(), "--threshold +7: not a number");
  EXPECT_EQ(ParseNumber("--threshold", "0", 1).status().message(),
            "--threshold 0: must be at least 1");
  EXPECT_EQ(ParseNumber("n", "11", 1, 10).status().message(), "n 11: must be at most 10");
  EXPECT_EQ(ParseNumber("n", "18446744073709551615").value(), UINT64_MAX);
  EXPECT_EQ(ParseNumber("n", "18446744073709551616").status().message(),
            "n 18446744073709551616: too large");
}

TEST(HumanTest, Bytes) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1024), "1.0 KiB");
  EXPECT_EQ(HumanBytes(64 << 20), "64.0 MiB");
  EXPECT_EQ(HumanBytes(3ull << 29), "1.5 GiB");
  EXPECT_EQ(HumanBytes(UINT64_MAX), "16.0 EiB");
}

TEST(HumanTest, PercentRoundsDown) {
  EXPECT_EQ(HumanPercent(0, 10), "0.0%");
  EXPECT_EQ(HumanPercent(9999, 10000), "99.9%");
  EXPECT_EQ(HumanPercent(10, 10), "100.0%");
  EXPECT_EQ(HumanPercent(1, 3), "33.3%");
  EXPECT_EQ(HumanPercent(0, 0), "100.0%");
}

TEST(HumanTest, Durations) {
  EXPECT_EQ(HumanDuration(-1), "0s");
  EXPECT_EQ(HumanDuration(0.2), "1s");
  EXPECT_EQ(HumanDuration(59), "59s");
  EXPECT_EQ(HumanDuration(185), "3m05s");
  EXPECT_EQ(HumanDuration(7620), "2h07m");
  EXPECT_EQ(HumanDuration(90000), "1d01h");
}

// The clone-semantics example: 8 1093/16384 8 1024/262144 1 1 no_discard_passdown ...
CloneStatus ExampleStatus() {
  return CloneStatus{.metadata = {.block_size = 4096, .used_blocks = 1093, .total_blocks = 16384},
                     .region_size = 4096,
                     .source_size = 262144ull * 4096,
                     .hydrated_regions = 1024,
                     .total_regions = 262144,
                     .hydrating_regions = 1,
                     .discard_passdown = false};
}

TEST(FormatStatusTest, LineAsDmClonePrintsIt) {
  CloneStatus status = ExampleStatus();
  EXPECT_EQ(FormatStatusLine(status),
            "8 1093/16384 8 1024/262144 1 1 no_discard_passdown 4 hydration_threshold 1 "
            "hydration_batch_size 1 rw");
  status.discard_passdown = true;
  status.hydration_enabled = false;
  status.hydration_threshold = 8;
  status.hydration_batch_size = 16;
  status.mode = CloneMode::kReadOnly;
  EXPECT_EQ(FormatStatusLine(status),
            "8 1093/16384 8 1024/262144 1 1 no_hydration 4 hydration_threshold 8 "
            "hydration_batch_size 16 ro");
  status.hydration_enabled = true;
  EXPECT_EQ(FormatStatusLine(status),
            "8 1093/16384 8 1024/262144 1 0 4 hydration_threshold 8 hydration_batch_size 16 ro");
  status.mode = CloneMode::kFail;
  EXPECT_EQ(FormatStatusLine(status), "Fail");
}

TEST(FormatStatusTest, Json) {
  CloneStatus status = ExampleStatus();
  status.rate_limit = 1 << 20;
  status.copy_rate = 1000.4;
  status.eta_seconds = 12.6;
  status.stop_reason = "say \"no\"\n";
  EXPECT_EQ(FormatStatusJson(status),
            "{\"mode\":\"rw\",\"active\":true,\"metadata\":{\"block_size\":4096,\"used_blocks\":"
            "1093,\"total_blocks\":16384},\"region_size\":4096,\"regions\":{\"hydrated\":1024,"
            "\"total\":262144,\"hydrating\":1},\"bytes\":{\"hydrated\":4194304,\"total\":"
            "1073741824,\"data\":null,\"holes\":null},\"features\":[\"no_discard_passdown\"],\"core_args\":{"
            "\"hydration_threshold\":1,\"hydration_batch_size\":1},\"hydration\":{\"state\":"
            "\"enabled\",\"rate_limit\":1048576,\"copy_rate\":1000,\"eta_seconds\":13,"
            "\"stop_reason\":\"say \\\"no\\\"\\n\"}}");
  status.mode = CloneMode::kFail;
  status.active = false;
  EXPECT_EQ(FormatStatusJson(status), "{\"mode\":\"Fail\",\"active\":false}");
}

// What a client parsing `status --json` relies on: valid JSON, and each key with its type.
TEST(FormatStatusTest, JsonParsesWithEachKeyOfItsType) {
  CloneStatus status = ExampleStatus();
  status.hydration_enabled = false;
  status.stop_reason = std::string("tab\t, bell\a, quote \", bad UTF-8 \xff\xfe, \xc3\xa9");
  for (const bool with_eta : {true, false}) {
    status.eta_seconds = with_eta ? std::optional<double>(99.5) : std::nullopt;
    status.data_and_holes =
        with_eta ? std::optional<DataAndHoles>({.data = 7, .holes = 9, .hydrated_data = 3,
                                                .hydrated_holes = 4})
                 : std::nullopt;
    const std::string text = FormatStatusJson(status);
    ASSERT_TRUE(nlohmann::json::accept(text)) << text;
    const nlohmann::json json = nlohmann::json::parse(text);
    EXPECT_EQ(json.at("mode"), "rw");
    EXPECT_TRUE(json.at("active").is_boolean());
    for (const char* key : {"block_size", "used_blocks", "total_blocks"})
      EXPECT_TRUE(json.at("metadata").at(key).is_number_unsigned()) << key;
    EXPECT_EQ(json.at("region_size"), 4096u);
    for (const char* key : {"hydrated", "total", "hydrating"})
      EXPECT_TRUE(json.at("regions").at(key).is_number_unsigned()) << key;
    EXPECT_EQ(json.at("bytes").at("hydrated"), status.hydrated_bytes());
    EXPECT_EQ(json.at("bytes").at("total"), status.source_size);
    if (with_eta) {
      EXPECT_EQ(json.at("bytes").at("data"), nlohmann::json({{"hydrated", 3}, {"total", 7}}));
      EXPECT_EQ(json.at("bytes").at("holes"), nlohmann::json({{"hydrated", 4}, {"total", 9}}));
    } else {
      EXPECT_TRUE(json.at("bytes").at("data").is_null());
      EXPECT_TRUE(json.at("bytes").at("holes").is_null());
    }
    EXPECT_EQ(json.at("features"), nlohmann::json::array({"no_hydration", "no_discard_passdown"}));
    EXPECT_TRUE(json.at("core_args").at("hydration_threshold").is_number_unsigned());
    EXPECT_TRUE(json.at("core_args").at("hydration_batch_size").is_number_unsigned());
    const nlohmann::json& hydration = json.at("hydration");
    EXPECT_EQ(hydration.at("state"), "disabled");
    EXPECT_TRUE(hydration.at("rate_limit").is_number_unsigned());
    EXPECT_TRUE(hydration.at("copy_rate").is_number_unsigned());
    if (with_eta) {
      EXPECT_EQ(hydration.at("eta_seconds"), 100);
    } else {
      EXPECT_TRUE(hydration.at("eta_seconds").is_null());
    }
    // Escapes come back as they were; bytes that are not UTF-8 as U+FFFD.
    EXPECT_EQ(hydration.at("stop_reason"),
              "tab\t, bell\a, quote \", bad UTF-8 \xef\xbf\xbd\xef\xbf\xbd, \xc3\xa9");
  }
  status.mode = CloneMode::kFail;
  const nlohmann::json fail = nlohmann::json::parse(FormatStatusJson(status));
  EXPECT_EQ(fail, nlohmann::json({{"mode", "Fail"}, {"active", true}}));
}

TEST(FormatStatusTest, Human) {
  CloneStatus status = ExampleStatus();
  status.hydrated_regions = 131072;
  status.copy_rate = 2 << 20;
  status.eta_seconds = 256;
  EXPECT_EQ(FormatStatusHuman(status),
            "mode       rw\n"
            "hydrated   512.0 MiB of 1.0 GiB (50.0%), 131072 of 262144 regions of 4.0 KiB\n"
            "hydrating  1 region\n"
            "hydration  enabled, threshold 1, batch 1\n"
            "rate       2.0 MiB/s, limit none, ETA 4m16s\n"
            "discards   not passed down (no_discard_passdown)\n"
            "metadata   1093 of 16384 blocks of 4.0 KiB used\n");
  status.data_and_holes = DataAndHoles{
      .data = 64 << 20, .holes = 960 << 20, .hydrated_data = 32 << 20, .hydrated_holes = 480 << 20};
  EXPECT_THAT(FormatStatusHuman(status),
              HasSubstr("hydrated   512.0 MiB of 1.0 GiB (50.0%), 131072 of 262144 regions of "
                        "4.0 KiB\ndata       32.0 MiB of 64.0 MiB copied\n"
                        "holes      480.0 MiB of 960.0 MiB zeroed, not copied\nhydrating"));
  status.data_and_holes = std::nullopt;
  status.active = false;
  status.hydrated_regions = status.total_regions - 1;
  status.hydration_stopped = true;  // completion wins over a stop
  EXPECT_THAT(FormatStatusHuman(status), HasSubstr("running    no (the committed state"));
  EXPECT_THAT(FormatStatusHuman(status), HasSubstr("(99.9%)"));
  EXPECT_THAT(FormatStatusHuman(status), ::testing::Not(HasSubstr("rate ")));
  status.hydrated_regions = status.total_regions;
  EXPECT_THAT(FormatStatusHuman(status), HasSubstr("1.0 GiB of 1.0 GiB (100.0%)"));
  EXPECT_THAT(FormatStatusHuman(status), HasSubstr("hydration  complete"));
  status.mode = CloneMode::kFail;
  EXPECT_THAT(FormatStatusHuman(status), HasSubstr("Fail"));
}

TEST(CloneStatusTest, ShortLastRegionCountsItsBytesOnly) {
  CloneStatus status{
      .region_size = 4096, .source_size = 10000, .hydrated_regions = 2, .total_regions = 3};
  EXPECT_EQ(status.hydrated_bytes(), 8192u);
  status.hydrated_regions = 3;
  EXPECT_EQ(status.hydrated_bytes(), 10000u);
}

// Records what ApplyMessage and CollectStatus ask of a hydrator.
struct FakeHydrator {
  void Enable() { calls.push_back("enable"); }
  void Disable() { calls.push_back("disable"); }
  void Restart() { calls.push_back("restart"); }
  void SetThreshold(uint64_t n) { calls.push_back(absl::StrCat("threshold ", n)); }
  void SetBatchSize(uint64_t n) { calls.push_back(absl::StrCat("batch ", n)); }
  void SetRetryPolicy(uint32_t max, std::chrono::milliseconds first,
                      std::chrono::milliseconds last) {
    calls.push_back(absl::StrCat("retry ", max, " ", first.count(), " ", last.count()));
  }
  HydrationProgress progress() const {
    return HydrationProgress{.hydrated_regions = 5,
                             .bytes_per_second = 100,
                             .eta_seconds = 7,
                             .stopped = true,
                             .stop_reason = absl::DataLossError("bad read")};
  }
  bool enabled() const { return false; }
  uint64_t threshold() const { return 3; }
  uint64_t batch_size() const { return 4; }
  std::vector<std::string> calls;
};

TEST(ApplyMessageTest, ReachesTheHydratorAndTheRateLimiter) {
  FakeHydrator hydrator;
  RateLimiter limiter;
  for (const char* line :
       {"enable_hydration", "disable_hydration", "restart_hydration", "hydration_threshold 9",
        "hydration_batch_size 2", "retry_policy 4 20 400", "rate_limit 8M"}) {
    absl::StatusOr<ControlMessage> message = ParseMessage(line);
    ASSERT_TRUE(message.ok()) << message.status();
    ApplyMessage(*message, hydrator, limiter);
  }
  EXPECT_THAT(hydrator.calls, ::testing::ElementsAre("enable", "disable", "restart", "threshold 9",
                                                     "batch 2", "retry 4 20 400"));
  EXPECT_EQ(limiter.rate(), 8u << 20);
}

struct FakeMetadata {
  MetadataUsage usage() const { return {.block_size = 4096, .used_blocks = 3, .total_blocks = 9}; }
};

struct FakeClone {
  CloneMode mode() const { return CloneMode::kReadOnly; }
  const FakeMetadata& metadata() const { return metadata_; }
  const CloneGeometry& geometry() const { return geometry_; }
  uint64_t hydrating_regions() const { return 2; }
  bool discard_passdown() const { return false; }
  FakeMetadata metadata_;
  CloneGeometry geometry_{
      .source_size = 40960, .dest_size = 40960, .region_size = 4096, .region_count = 10};
};

TEST(CollectStatusTest, GathersEveryField) {
  RateLimiter limiter(77);
  const CloneStatus status = CollectStatus(FakeClone(), FakeHydrator(), limiter);
  EXPECT_EQ(FormatStatusLine(status),
            "8 3/9 8 5/10 2 2 no_hydration no_discard_passdown 4 hydration_threshold 3 "
            "hydration_batch_size 4 ro");
  EXPECT_EQ(status.rate_limit, 77u);
  EXPECT_EQ(status.copy_rate, 100);
  EXPECT_EQ(status.eta_seconds, 7);
  EXPECT_TRUE(status.hydration_stopped);
  EXPECT_EQ(status.stop_reason, "bad read");
  EXPECT_EQ(status.source_size, 40960u);
}

}  // namespace
}  // namespace blkclone

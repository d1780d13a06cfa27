// RbdDevice against a real single-node Ceph cluster (ctest runs this binary
// under tests/ceph/with_cluster.sh): image specs, the conformance suite with
// librbd's cache off and on and without fast-diff, open errors, snapshots,
// allocation (block status) and thin zeroing, requests in flight and
// shutdown, and clones hydrated from and into RBD images.
#include "blkclone/rbd_device.hpp"

#include <cstring>
#include <fstream>
#include <future>
#include <random>
#include <vector>

#include "absl/strings/str_split.h"
#include "blkclone/buffered_copier.hpp"
#include "blkclone/clone.hpp"
#include "blkclone/extents.hpp"
#include "blkclone/hydrator.hpp"
#include "blkclone/in_memory_metadata.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/temp_dir.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rbd_test_pool.hpp"
#include "request_batch.hpp"
#include "test_bytes.hpp"

namespace blkclone {
namespace {

using testing::RandomBytes;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::PatternBuffer;
using testing::RbdTestPool;
using testing::RequestBatch;
using Bytes = std::vector<std::byte>;

// The pool every test shares; null (with the reason on stderr) without a cluster.
RbdTestPool* SharedPool() {
  static RbdTestPool* const pool = [] {
    auto connected = RbdTestPool::Connect();
    if (!connected.ok()) {
      std::cerr << "no Ceph cluster: " << connected.status() << "\n";
      return static_cast<RbdTestPool*>(nullptr);
    }
    return connected->release();
  }();
  return pool;
}

// Ceph's default features, with the object map and fast-diff, and without:
// then block status asks every object.
constexpr uint64_t kWithFastDiff = RBD_FEATURES_DEFAULT;
constexpr uint64_t kWithoutFastDiff = RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK;

// Writable images for the conformance suite; a "crash" closes and reopens the
// image, and librbd keeps nothing that close does not flush. Objects of 64 KiB,
// so that the suite's data and holes lie in different objects.
template <bool kCache, uint64_t kFeatures = kWithFastDiff>
struct RbdFactory {
  using Device = RbdDevice;
  static constexpr bool kCrashLosesUnflushed = false;

  std::unique_ptr<RbdDevice> Create(uint64_t size) {
    RbdTestPool* pool = SharedPool();
    if (pool == nullptr) return nullptr;
    auto created = pool->CreateImage(size, {.order = 16, .features = kFeatures});
    if (!created.ok()) {
      ADD_FAILURE() << created.status();
      return nullptr;
    }
    spec = *created;
    return Open();
  }
  std::unique_ptr<RbdDevice> Crash(std::unique_ptr<RbdDevice> device) {
    device.reset();
    return Open();
  }
  std::unique_ptr<RbdDevice> Open() {
    auto device = RbdDevice::Open(spec, {.writable = true, .cache = kCache});
    if (!device.ok()) ADD_FAILURE() << device.status();
    return device.ok() ? *std::move(device) : nullptr;
  }

  RbdImageSpec spec;
};

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Rbd, DeviceConformanceTest, ::testing::Types<RbdFactory<false>>);
INSTANTIATE_TYPED_TEST_SUITE_P(RbdCached, DeviceConformanceTest,
                               ::testing::Types<RbdFactory<true>>);
using RbdWithoutFastDiffFactory = RbdFactory<false, kWithoutFastDiff>;
INSTANTIATE_TYPED_TEST_SUITE_P(RbdWithoutFastDiff, DeviceConformanceTest,
                               ::testing::Types<RbdWithoutFastDiffFactory>);
}  // namespace testing
namespace {

TEST(RbdImageSpecTest, ParsesTheRbdToolsForms) {
  EXPECT_EQ(*RbdImageSpec::Parse("rbd/disk"), (RbdImageSpec{.pool = "rbd", .image = "disk"}));
  EXPECT_EQ(*RbdImageSpec::Parse("p/ns/disk@snap"),
            (RbdImageSpec{.pool = "p", .name_space = "ns", .image = "disk", .snapshot = "snap"}));
  for (const char* spec : {"rbd/disk", "p/ns/disk@snap", "p/disk@s"})
    EXPECT_EQ(RbdImageSpec::Parse(spec)->ToString(), spec);
}

TEST(RbdImageSpecTest, RefusesMalformedSpecs) {
  for (const char* bad : {"", "disk", "/disk", "rbd/", "a/b/c/d", "rbd//disk", "rbd/disk@",
                          "rbd/disk@a@b", "@snap"}) {
    auto spec = RbdImageSpec::Parse(bad);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(spec.status().message(), HasSubstr("POOL/[NAMESPACE/]IMAGE[@SNAPSHOT]")) << bad;
  }
}

class RbdDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = SharedPool();
    if (pool_ == nullptr) GTEST_SKIP() << "no Ceph cluster (CEPH_CONF)";
  }

  // A new image filled with random bytes (kept in content_).
  RbdImageSpec FilledImage(uint64_t size) {
    auto spec = pool_->CreateImage(size);
    EXPECT_TRUE(spec.ok()) << spec.status();
    content_ = RandomBytes(size, static_cast<uint32_t>(size));
    EXPECT_TRUE(pool_->Write(*spec, 0, content_).ok());
    return *spec;
  }

  static std::unique_ptr<RbdDevice> OpenOrFail(const RbdImageSpec& spec,
                                               const RbdOptions& options) {
    auto device = RbdDevice::Open(spec, options);
    if (!device.ok()) ADD_FAILURE() << device.status();
    return device.ok() ? *std::move(device) : nullptr;
  }

  RbdTestPool* pool_ = nullptr;
  Bytes content_;
};

TEST_F(RbdDeviceTest, IsAReadOnlySourceByDefault) {
  const RbdImageSpec spec = FilledImage(1 << 20);
  auto device = OpenOrFail(spec, {});
  ASSERT_NE(device, nullptr);
  const DeviceInfo& info = device->info();
  EXPECT_EQ(info.size, 1u << 20);
  EXPECT_EQ(info.logical_block_size, 512u);
  EXPECT_TRUE(info.caps.read_only);
  EXPECT_FALSE(info.caps.volatile_write_cache) << "librbd's cache is off by default";
  PatternBuffer data(4096, 1);
  EXPECT_EQ(WriteAt(*device, 0, data.span()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Discard(*device, 0, 4096).code(), absl::StatusCode::kUnimplemented);
  ASSERT_TRUE(ReadAt(*device, 8192, data.span()).ok());
  EXPECT_EQ(std::memcmp(data.data(), content_.data() + 8192, 4096), 0);
}

TEST_F(RbdDeviceTest, OpenErrorsSayWhatIsWrong) {
  const RbdImageSpec spec = FilledImage(1 << 20);
  const RbdOptions options{.ceph_conf = pool_->conf()};

  RbdImageSpec no_pool = spec;
  no_pool.pool = "nopool";
  auto missing_pool = RbdDevice::Open(no_pool, options);
  EXPECT_EQ(missing_pool.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing_pool.status().message(), HasSubstr("no pool nopool"));

  RbdImageSpec no_image = spec;
  no_image.image = "noimage";
  auto missing_image = RbdDevice::Open(no_image, options);
  EXPECT_EQ(missing_image.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing_image.status().message(), HasSubstr("rbd/noimage"));

  RbdImageSpec no_snapshot = spec;
  no_snapshot.snapshot = "nosnap";
  EXPECT_EQ(RbdDevice::Open(no_snapshot, options).status().code(), absl::StatusCode::kNotFound);

  RbdImageSpec snapshot = spec;
  snapshot.snapshot = "s";
  auto writable_snapshot = RbdDevice::Open(snapshot, {.writable = true});
  EXPECT_EQ(writable_snapshot.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(writable_snapshot.status().message(), HasSubstr("snapshot is read-only"));

  auto missing_conf = RbdDevice::Open(spec, {.ceph_conf = "/nonexistent/ceph.conf"});
  EXPECT_EQ(missing_conf.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing_conf.status().message(), HasSubstr("/nonexistent/ceph.conf"));

  EXPECT_EQ(RbdDevice::Open(spec, {.max_in_flight = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RbdDeviceTest, AClusterThatDoesNotAnswerFailsWithinTheTimeout) {
  auto dir = testing::TempDir::Create("rbd-device-test");
  ASSERT_TRUE(dir.ok());
  // A monitor address where nothing listens (port 9 is discard, closed here).
  const std::string conf = (dir->path() / "ceph.conf").string();
  std::ofstream(conf) << "[global]\nmon host = [v2:127.0.0.1:9]\n"
                      << "auth client required = none\n";
  auto device =
      RbdDevice::Open(*RbdImageSpec::Parse("rbd/x"), {.ceph_conf = conf, .connect_timeout = 2s});
  EXPECT_TRUE(absl::IsUnavailable(device.status()) || absl::IsDeadlineExceeded(device.status()))
      << device.status();
  EXPECT_THAT(device.status().message(), HasSubstr("rbd/x"));
}

TEST_F(RbdDeviceTest, ASnapshotKeepsItsContentWhileTheImageChanges) {
  const RbdImageSpec spec = FilledImage(1 << 20);
  const Bytes before = content_;
  ASSERT_TRUE(pool_->Write(spec, 0, {}, "golden").ok());
  auto image = OpenOrFail(spec, {.writable = true});
  ASSERT_NE(image, nullptr);
  const Bytes changed = RandomBytes(64 << 10, 7);
  ASSERT_TRUE(WriteAt(*image, 0, changed).ok());

  RbdImageSpec golden = spec;
  golden.snapshot = "golden";
  auto snapshot = OpenOrFail(golden, {});
  ASSERT_NE(snapshot, nullptr);
  EXPECT_TRUE(snapshot->info().caps.read_only);
  Bytes read(before.size());
  ASSERT_TRUE(ReadAt(*snapshot, 0, read).ok());
  EXPECT_EQ(read, before);
}

TEST_F(RbdDeviceTest, WriteZeroesReadsBackZeroes) {
  const RbdImageSpec spec = FilledImage(1 << 20);
  auto device = OpenOrFail(spec, {.writable = true});
  ASSERT_NE(device, nullptr);
  ASSERT_TRUE(WriteZeroes(*device, 4096, 12288).ok());
  Bytes read(20480);
  ASSERT_TRUE(ReadAt(*device, 0, read).ok());
  EXPECT_EQ(std::memcmp(read.data(), content_.data(), 4096), 0);
  EXPECT_EQ(std::count(read.begin() + 4096, read.begin() + 16384, std::byte{0}), 12288);
  EXPECT_EQ(std::memcmp(read.data() + 16384, content_.data() + 16384, 4096), 0);
}

// Block status and zeroing, on images of 4 MiB objects.
class RbdAllocationTest : public RbdDeviceTest {
 protected:
  static constexpr uint64_t kObject = 4 << 20, kSize = 16 * kObject;
  // Written by WriteSparse: a whole object, and 4 KiB inside another.
  static constexpr uint64_t kWholeAt = 4 * kObject, kSmallAt = 10 * kObject + (8 << 10),
                            kSmall = 4 << 10;

  RbdImageSpec SparseImage(uint64_t features) {
    auto spec = pool_->CreateImage(kSize, {.features = features});
    EXPECT_TRUE(spec.ok()) << spec.status();
    EXPECT_TRUE(pool_->Write(*spec, kWholeAt, RandomBytes(kObject, 1)).ok());
    EXPECT_TRUE(pool_->Write(*spec, kSmallAt, RandomBytes(kSmall, 2)).ok());
    return *spec;
  }

  // The data extents of the device's answer for the whole device, which
  // must be well formed, with holes that read as zeroes.
  static std::vector<Extent> DataOf(RbdDevice& device) {
    const uint64_t size = device.info().size;
    auto extents = DescribeAllocation(device, 0, size);
    EXPECT_TRUE(extents.ok()) << extents.status();
    if (!extents.ok()) return {};
    EXPECT_TRUE(CheckExtents(*extents, 0, size, device.info().logical_block_size).ok());
    std::vector<Extent> data;
    for (const Extent& extent : *extents) {
      if (!extent.hole) {
        data.push_back(extent);
        continue;
      }
      Bytes read(extent.length);
      EXPECT_TRUE(ReadAt(device, extent.offset, read).ok());
      EXPECT_EQ(std::count(read.begin(), read.end(), std::byte{0}), extent.length)
          << "hole at " << extent.offset << " does not read as zeroes";
    }
    return data;
  }
};

TEST_F(RbdAllocationTest, FastDiffAnswersInWholeObjects) {
  auto device = OpenOrFail(SparseImage(kWithFastDiff), {});
  ASSERT_NE(device, nullptr);
  EXPECT_TRUE(device->info().caps.block_status);
  EXPECT_EQ(DataOf(*device), (std::vector<Extent>{{.offset = kWholeAt, .length = kObject},
                                                  {.offset = 10 * kObject, .length = kObject}}));
  // A range inside an object gets that part of it.
  auto part = DescribeAllocation(*device, kSmallAt + 512, 1024);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(*part, (std::vector<Extent>{{.offset = kSmallAt + 512, .length = 1024}}));
}

TEST_F(RbdAllocationTest, WithoutFastDiffEachObjectSaysWhatItHolds) {
  auto device = OpenOrFail(SparseImage(kWithoutFastDiff), {});
  ASSERT_NE(device, nullptr);
  const std::vector<Extent> data = DataOf(*device);
  ASSERT_EQ(data.size(), 2u) << ::testing::PrintToString(data);
  EXPECT_EQ(data[0], (Extent{.offset = kWholeAt, .length = kObject}));
  // The object store may count from the object's start: never beyond it.
  EXPECT_GE(data[1].offset, 10 * kObject);
  EXPECT_LE(data[1].offset, kSmallAt);
  EXPECT_GE(data[1].end(), kSmallAt + kSmall);
  EXPECT_LE(data[1].end(), 11 * kObject);
}

TEST_F(RbdAllocationTest, ASnapshotAnswersForItself) {
  const RbdImageSpec spec = SparseImage(kWithFastDiff);
  ASSERT_TRUE(pool_->Write(spec, 0, {}, "before").ok());
  auto head = OpenOrFail(spec, {.writable = true});
  ASSERT_NE(head, nullptr);
  ASSERT_TRUE(WriteAt(*head, 0, RandomBytes(4096, 3)).ok());
  ASSERT_TRUE(WriteZeroes(*head, kWholeAt, kObject).ok());
  EXPECT_EQ(DataOf(*head), (std::vector<Extent>{{.offset = 0, .length = kObject},
                                                {.offset = 10 * kObject, .length = kObject}}));
  RbdImageSpec before = spec;
  before.snapshot = "before";
  auto snapshot = OpenOrFail(before, {});
  ASSERT_NE(snapshot, nullptr);
  EXPECT_EQ(DataOf(*snapshot), (std::vector<Extent>{{.offset = kWholeAt, .length = kObject},
                                                    {.offset = 10 * kObject, .length = kObject}}));
}

TEST_F(RbdAllocationTest, AClonesParentDataIsData) {
  for (const uint64_t features : {kWithFastDiff, kWithoutFastDiff}) {
    RbdImageSpec parent = SparseImage(features);
    ASSERT_TRUE(pool_->Write(parent, 0, {}, "base").ok());
    parent.snapshot = "base";
    auto child = pool_->CloneImage(parent, {.features = features});
    ASSERT_TRUE(child.ok()) << child.status();
    ASSERT_TRUE(pool_->Write(*child, 0, RandomBytes(kObject, 4)).ok());
    auto device = OpenOrFail(*child, {});
    ASSERT_NE(device, nullptr);
    const std::vector<Extent> data = DataOf(*device);
    ASSERT_EQ(data.size(), 3u) << features << ": " << ::testing::PrintToString(data);
    EXPECT_EQ(data[0], (Extent{.offset = 0, .length = kObject})) << features;
    EXPECT_EQ(data[1], (Extent{.offset = kWholeAt, .length = kObject})) << features;
    EXPECT_LE(data[2].offset, kSmallAt) << features;
    EXPECT_GE(data[2].end(), kSmallAt + kSmall) << features;
  }
}

// What a clone does to the holes of a sparse source on an RBD destination:
// write-zeroes (discard does not promise zeroes: librbd skips the pieces of a
// discard below its granularity) must read as zeroes and leave no data
// behind, over data and over holes, aligned or not; so must a discard of
// whole objects.
TEST_F(RbdAllocationTest, ZeroingLeavesTheImageThin) {
  for (const uint64_t features : {kWithFastDiff, kWithoutFastDiff}) {
    auto device = OpenOrFail(SparseImage(features), {.writable = true});
    ASSERT_NE(device, nullptr);
    EXPECT_TRUE(device->info().caps.write_zeroes);
    EXPECT_FALSE(device->info().caps.discard_zeroes_data);
    ASSERT_TRUE(Discard(*device, kWholeAt, kObject).ok());
    ASSERT_TRUE(WriteZeroes(*device, 10 * kObject, kObject).ok());
    ASSERT_TRUE(WriteZeroes(*device, 0, 3 * kObject).ok());
    ASSERT_TRUE(WriteZeroes(*device, 6 * kObject + 512, 4096).ok());
    ASSERT_TRUE(WriteZeroes(*device, 7 * kObject + (1 << 20), 3 * kObject).ok());
    EXPECT_EQ(DataOf(*device), std::vector<Extent>{}) << features;
  }
}

// librbd answers block status synchronously: the device must not run it
// inside Submit, where it would block the submitter (often a completion).
TEST_F(RbdAllocationTest, BlockStatusCompletesOffTheSubmittersThread) {
  auto device = OpenOrFail(SparseImage(kWithFastDiff), {});
  ASSERT_NE(device, nullptr);
  std::vector<Extent> extents;
  std::promise<std::thread::id> completed_on;
  Request request = Request::BlockStatus(0, kSize, &extents);
  request.context = &completed_on;
  request.on_complete = [](Request& r, absl::Status status) {
    EXPECT_TRUE(status.ok()) << status;
    static_cast<std::promise<std::thread::id>*>(r.context)->set_value(std::this_thread::get_id());
  };
  std::future<std::thread::id> done = completed_on.get_future();
  device->Submit(request);
  ASSERT_EQ(done.wait_for(60s), std::future_status::ready);
  EXPECT_NE(done.get(), std::this_thread::get_id());
  EXPECT_EQ(HoleBytes(extents), kSize - 2 * kObject);
}

TEST_F(RbdDeviceTest, RequestsBeyondMaxInFlightWaitTheirTurn) {
  const RbdImageSpec spec = FilledImage(4 << 20);
  auto device = OpenOrFail(spec, {.writable = true, .max_in_flight = 2});
  ASSERT_NE(device, nullptr);
  constexpr size_t kBlocks = 256;
  constexpr size_t kBlock = 16 << 10;
  const Bytes data = RandomBytes(kBlocks * kBlock, 3);
  RequestBatch batch;
  for (size_t i = 0; i < kBlocks; ++i) {
    batch.Add(Request::Write(i * kBlock, std::span(data).subspan(i * kBlock, kBlock),
                             i % 16 == 0 ? kFua : kNoFlags));
  }
  batch.SubmitAll(*device);
  batch.Wait();
  EXPECT_EQ(batch.Problems(), "");
  Bytes read(data.size());
  ASSERT_TRUE(ReadAt(*device, 0, read).ok());
  EXPECT_EQ(read, data);
}

TEST_F(RbdDeviceTest, ClosingCompletesEveryRequestOnce) {
  const RbdImageSpec spec = FilledImage(4 << 20);
  auto device = OpenOrFail(spec, {.max_in_flight = 4});
  ASSERT_NE(device, nullptr);
  std::vector<Bytes> buffers(200, Bytes(16 << 10));
  std::vector<std::vector<Extent>> answers(buffers.size());
  RequestBatch batch;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const uint64_t offset = (i % 256) * (16 << 10);
    // Block status goes through the describing thread: closing waits for it too.
    batch.Add(i % 4 == 0 ? Request::BlockStatus(offset, 16 << 10, &answers[i])
                         : Request::Read(offset, buffers[i]));
  }
  batch.SubmitAll(*device);
  device.reset();  // requests still waiting fail with kCancelled
  batch.Wait();
  const std::string problems = batch.Problems();
  EXPECT_THAT(problems, ::testing::Not(HasSubstr("2 completions")));
  EXPECT_THAT(problems, ::testing::Not(HasSubstr("0 completions")));
  for (absl::string_view line : absl::StrSplit(problems, '\n', absl::SkipEmpty()))
    EXPECT_THAT(line, HasSubstr("CANCELLED"));
}

// A completion that submits the next request runs on the device's thread, so
// a chain of them neither deadlocks nor blocks librbd.
TEST_F(RbdDeviceTest, ACompletionMaySubmitTheNextRequest) {
  const RbdImageSpec spec = FilledImage(1 << 20);
  auto device = OpenOrFail(spec, {.writable = true, .max_in_flight = 1});
  ASSERT_NE(device, nullptr);
  struct Chain {
    RbdDevice* device = nullptr;
    Bytes block = Bytes(4096);
    Request request;
    int left = 64;  // only touched by the completions, one after another
    std::promise<absl::Status> done;
  } chain;
  chain.device = device.get();
  chain.request = Request::Read(0, chain.block);
  chain.request.context = &chain;
  chain.request.on_complete = [](Request& request, absl::Status status) {
    Chain& c = *static_cast<Chain*>(request.context);
    if (!status.ok() || --c.left == 0) return c.done.set_value(status);
    request.offset = (request.offset + 4096) % (1 << 20);
    c.device->Submit(request);
  };
  std::future<absl::Status> done = chain.done.get_future();
  device->Submit(chain.request);
  ASSERT_EQ(done.wait_for(60s), std::future_status::ready);
  const absl::Status status = done.get();
  EXPECT_TRUE(status.ok()) << status;
}

// A clone from `Source` into `Dest` hydrated in the background.
template <class Source, class Dest>
class HydratedClone {
 public:
  using Copier = BufferedCopier<Source, Dest>;
  using CloneT = Clone<Source, Dest, Copier>;
  static constexpr uint64_t kRegion = 64 << 10;

  HydratedClone(Source& source, Dest& dest)
      : copier_(source, dest, {.chunk_size = kRegion}),
        metadata_(*MakeCloneGeometry(source.info(), dest.info(), kRegion)),
        clone_(*CloneT::Create(source, dest, copier_, metadata_, {})),
        hydrator_(std::make_unique<Hydrator<CloneT>>(*clone_, HydratorOptions{.threshold = 16})) {}
  ~HydratedClone() {
    (void)clone_->Close();
    hydrator_.reset();
  }
  CloneT& clone() { return *clone_; }
  bool WaitUntilHydrated() { return hydrator_->WaitUntilComplete(60s); }

 private:
  Copier copier_;
  InMemoryMetadata metadata_;
  std::unique_ptr<CloneT> clone_;
  std::unique_ptr<Hydrator<CloneT>> hydrator_;
};

TEST_F(RbdDeviceTest, HydratesAnRbdSourceIntoMemory) {
  constexpr uint64_t kSize = 8 << 20;
  const RbdImageSpec spec = FilledImage(kSize);
  auto source = OpenOrFail(spec, {});
  ASSERT_NE(source, nullptr);
  auto dest = *MemoryDevice::Create({.size = kSize});
  HydratedClone<RbdDevice, MemoryDevice> clone(*source, *dest);
  ASSERT_TRUE(clone.WaitUntilHydrated());
  EXPECT_TRUE(dest->Contents() == content_);
}

TEST_F(RbdDeviceTest, HydratesIntoAnRbdDestinationWhileItIsWritten) {
  constexpr uint64_t kSize = 8 << 20;
  auto source = *MemoryDevice::Create({.size = kSize});
  Bytes expected = RandomBytes(kSize, 11);
  source->Fill(0, expected);
  auto created = pool_->CreateImage(kSize);
  ASSERT_TRUE(created.ok()) << created.status();
  auto dest = OpenOrFail(*created, {.writable = true});
  ASSERT_NE(dest, nullptr);
  {
    HydratedClone<MemoryDevice, RbdDevice> clone(*source, *dest);
    const Bytes written = RandomBytes(100 << 10, 12);
    ASSERT_TRUE(WriteAt(clone.clone(), 3 << 20, written, kFua).ok());
    std::copy(written.begin(), written.end(), expected.begin() + (3 << 20));
    ASSERT_TRUE(clone.WaitUntilHydrated());
    ASSERT_TRUE(Flush(clone.clone()).ok());
  }
  dest.reset();
  auto reopened = OpenOrFail(*created, {});
  ASSERT_NE(reopened, nullptr);
  Bytes read(kSize);
  ASSERT_TRUE(ReadAt(*reopened, 0, read).ok());
  EXPECT_TRUE(read == expected);
}

}  // namespace
}  // namespace blkclone

// The test devices: fault injection, the read-only guard, delays, counting and
// recording with crash replay; the conformance suite over the wrappers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "blkclone/internal/mutex.hpp"
#include "blkclone/sync_io.hpp"
#include "blkclone/testing/counting_device.hpp"
#include "blkclone/testing/delay_device.hpp"
#include "blkclone/testing/device_conformance.hpp"
#include "blkclone/testing/fault_device.hpp"
#include "blkclone/testing/guard_device.hpp"
#include "blkclone/testing/memory_device.hpp"
#include "blkclone/testing/recording_device.hpp"
#include "bounded_wait.hpp"
#include "gtest/gtest.h"

namespace blkclone {
namespace {

using testing::BoundedThread;
using namespace std::chrono_literals;
using testing::AwaitOrAbort;

constexpr uint64_t kDeviceSize = 64 * 1024;
constexpr uint64_t kBlock = 512;

// A wrapper over a crash-simulating MemoryDevice that the factory owns.
template <class Wrapper>
struct WrappedMemoryFactory {
  using Device = Wrapper;
  static constexpr bool kCrashLosesUnflushed = true;
  std::unique_ptr<Device> Create(uint64_t size) {
    inner = *MemoryDevice::Create({.size = size, .simulate_crashes = true});
    return std::make_unique<Device>(*inner);
  }
  std::unique_ptr<Device> Crash(std::unique_ptr<Device> device) {
    inner->SimulateCrash();
    return device;
  }
  std::unique_ptr<MemoryDevice> inner;
};

using WrapperFactories = ::testing::Types<WrappedMemoryFactory<DelayDevice<MemoryDevice>>,
                                          WrappedMemoryFactory<CountingDevice<MemoryDevice>>,
                                          WrappedMemoryFactory<RecordingDevice<MemoryDevice>>>;

}  // namespace
namespace testing {
INSTANTIATE_TYPED_TEST_SUITE_P(Wrapped, DeviceConformanceTest, WrapperFactories);
}  // namespace testing
namespace {

std::vector<std::byte> Bytes(size_t n, uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

std::unique_ptr<MemoryDevice> NewMemory(bool simulate_crashes = false) {
  return *MemoryDevice::Create({.size = kDeviceSize, .simulate_crashes = simulate_crashes});
}

// Requests submitted without waiting for them, and how each one completed.
class Batch {
 public:
  struct Outcome {
    int completions = 0;
    absl::Status status;
    std::thread::id thread;
  };

  // Each returns the request's number, its position in the batch.
  size_t AddWrite(uint64_t offset, size_t length, uint8_t value, uint8_t flags = kNoFlags) {
    Io& io = AddIo(Bytes(length, value));
    io.request = Request::Write(offset, io.buffer, flags);
    return Prepare(io);
  }
  size_t AddRead(uint64_t offset, size_t length) {
    Io& io = AddIo(Bytes(length, 0));
    io.request = Request::Read(offset, io.buffer);
    return Prepare(io);
  }
  size_t Add(Request request) {
    Io& io = AddIo({});
    io.request = request;
    return Prepare(io);
  }

  template <BlockDevice D>
  void SubmitAll(D& device) {
    for (auto& io : ios_) device.Submit(io->request);
  }
  void Wait() {
    internal::MutexLock lock(mu_);
    AwaitOrAbort(
        done_cv_, mu_,
        [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return order_.size() >= ios_.size(); },
        "every request to complete");
  }
  // Numbers of the completed requests, in completion order.
  std::vector<size_t> Order() const {
    internal::MutexLock lock(mu_);
    return order_;
  }
  Outcome outcome(size_t number) const {
    internal::MutexLock lock(mu_);
    return ios_[number]->outcome;
  }
  size_t size() const { return ios_.size(); }

 private:
  struct Io {
    Request request;
    std::vector<std::byte> buffer;
    size_t number = 0;
    Batch* batch = nullptr;
    Outcome outcome;  // guarded by batch->mu_
  };

  Io& AddIo(std::vector<std::byte> buffer) {
    ios_.push_back(std::make_unique<Io>());
    ios_.back()->buffer = std::move(buffer);
    return *ios_.back();
  }
  size_t Prepare(Io& io) {
    io.number = ios_.size() - 1;
    io.batch = this;
    io.request.context = &io;
    io.request.on_complete = [](Request& request, absl::Status status) {
      Io& done = *static_cast<Io*>(request.context);
      internal::MutexLock lock(done.batch->mu_);
      ++done.outcome.completions;
      done.outcome.status = std::move(status);
      done.outcome.thread = std::this_thread::get_id();
      done.batch->order_.push_back(done.number);
      done.batch->done_cv_.SignalAll();
    };
    return io.number;
  }

  mutable internal::Mutex mu_;
  internal::CondVar done_cv_;
  std::vector<std::unique_ptr<Io>> ios_;  // filled before submission
  std::vector<size_t> order_ ABSL_GUARDED_BY(mu_);
};

// --- FaultInjectingDevice ---

TEST(FaultInjectingDeviceTest, FailsExactlyTheConfiguredOccurrences) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 2, .count = 3});
  std::vector<std::byte> block(kBlock);
  for (int i = 0; i < 8; ++i) {
    const bool should_fail = i >= 2 && i < 5;
    absl::Status status = WriteAt(faulty, i * kBlock, Bytes(kBlock, i + 1));
    EXPECT_EQ(status.code(), should_fail ? absl::StatusCode::kInternal : absl::StatusCode::kOk)
        << "write " << i;
    EXPECT_TRUE(ReadAt(faulty, 0, block).ok()) << "reads match no rule";
  }
  const std::vector<std::byte> contents = memory->Contents();
  for (int i = 0; i < 8; ++i) {
    const bool should_fail = i >= 2 && i < 5;
    EXPECT_EQ(contents[i * kBlock], std::byte(should_fail ? 0 : i + 1))
        << "a failed write reached the device, or a passed one did not: " << i;
  }
  const FaultCounters counters = faulty.counters();
  EXPECT_EQ(counters.injected[Op::kWrite], 3u);
  EXPECT_EQ(counters.injected[Op::kRead], 0u);
  EXPECT_EQ(counters.matched, 8u);
}

TEST(FaultInjectingDeviceTest, MatchesOnlyRequestsOverlappingTheRange) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.range = ByteRange{.offset = 4096, .length = 4096}});
  std::vector<std::byte> block(kBlock);
  EXPECT_TRUE(WriteAt(faulty, 0, Bytes(4096, 1)).ok()) << "ends where the range starts";
  EXPECT_FALSE(WriteAt(faulty, 3584, Bytes(1024, 1)).ok()) << "straddles the start";
  EXPECT_FALSE(WriteAt(faulty, 7680, Bytes(kBlock, 1)).ok()) << "last block of the range";
  EXPECT_TRUE(WriteAt(faulty, 8192, Bytes(kBlock, 1)).ok()) << "starts where the range ends";
  EXPECT_FALSE(ReadAt(faulty, 4096, block).ok());
  EXPECT_TRUE(ReadAt(faulty, 4096, std::span(block).first(0)).ok()) << "covers no byte";
  EXPECT_TRUE(Flush(faulty).ok()) << "a flush covers no byte";
  EXPECT_FALSE(Discard(faulty, 0, kDeviceSize).ok()) << "contains the range";
  const FaultCounters counters = faulty.counters();
  EXPECT_EQ(counters.injected[Op::kWrite], 2u);
  EXPECT_EQ(counters.injected[Op::kRead], 1u);
  EXPECT_EQ(counters.injected[Op::kDiscard], 1u);
  EXPECT_EQ(counters.injected[Op::kFlush], 0u);
  EXPECT_EQ(counters.matched, 4u);
}

TEST(FaultInjectingDeviceTest, DefaultErrorNamesTheRequestAndCustomErrorsAreKept) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.ops = {Op::kFlush}, .error = absl::UnavailableError("cable pulled")});
  faulty.AddRule({.ops = {Op::kRead}});
  absl::Status flushed = Flush(faulty);
  EXPECT_EQ(flushed.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(flushed.message(), "cable pulled");
  std::vector<std::byte> block(kBlock);
  absl::Status read = ReadAt(faulty, 1024, block);
  EXPECT_EQ(read.code(), absl::StatusCode::kInternal);
  EXPECT_NE(read.message().find("injected read at offset 1024 length 512"), absl::string_view::npos)
      << read;
}

TEST(FaultInjectingDeviceTest, PassedThroughWriteLandsButReportsAnError) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.ops = {Op::kWrite}, .count = 1, .pass_through = true});
  Batch batch;
  batch.AddWrite(0, kBlock, 7);
  batch.SubmitAll(faulty);
  batch.Wait();
  EXPECT_EQ(batch.outcome(0).completions, 1);
  EXPECT_EQ(batch.outcome(0).status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(memory->Contents()[0], std::byte{7}) << "the write did not reach the device";
  EXPECT_TRUE(WriteAt(faulty, kBlock, Bytes(kBlock, 8)).ok()) << "count was 1";
  EXPECT_EQ(faulty.counters().injected[Op::kWrite], 1u);
}

TEST(FaultInjectingDeviceTest, FirstFailingRuleHidesTheRequestFromLaterRules) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.ops = {Op::kWrite}, .count = 1, .error = absl::DataLossError("first")});
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 1, .error = absl::AbortedError("second")});
  const auto data = Bytes(kBlock, 1);
  EXPECT_EQ(WriteAt(faulty, 0, data).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(WriteAt(faulty, 0, data).ok()) << "the second rule's skip saw the first write";
  EXPECT_EQ(WriteAt(faulty, 0, data).code(), absl::StatusCode::kAborted);
  faulty.ClearRules();
  EXPECT_TRUE(WriteAt(faulty, 0, data).ok());
  EXPECT_EQ(faulty.counters().matched, 3u);
  EXPECT_EQ(faulty.counters().injected[Op::kWrite], 2u);
}

TEST(FaultInjectingDeviceTest, ProbabilityIsReproducibleFromTheSeed) {
  auto memory = NewMemory();
  std::vector<std::byte> block(kBlock);
  auto failures = [&](FaultRule rule) {
    FaultInjectingDevice faulty(*memory);
    faulty.AddRule(std::move(rule));
    std::vector<bool> failed;
    for (int i = 0; i < 400; ++i) failed.push_back(!ReadAt(faulty, 0, block).ok());
    return failed;
  };
  const std::vector<bool> seven = failures({.probability = 0.25, .seed = 7});
  EXPECT_EQ(seven, failures({.probability = 0.25, .seed = 7}));
  EXPECT_NE(seven, failures({.probability = 0.25, .seed = 8}));
  const auto count = std::count(seven.begin(), seven.end(), true);
  EXPECT_GT(count, 60);
  EXPECT_LT(count, 140);
  const std::vector<bool> capped = failures({.count = 10, .probability = 0.5, .seed = 7});
  EXPECT_EQ(std::count(capped.begin(), capped.end(), true), 10);
}

TEST(FaultInjectingDeviceTest, FailsExactlyCountRequestsFromConcurrentSubmitters) {
  auto memory = NewMemory();
  FaultInjectingDevice faulty(*memory);
  faulty.AddRule({.ops = {Op::kWrite}, .skip = 20, .count = 50});
  std::atomic<int> failed{0};
  std::deque<BoundedThread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        if (!WriteAt(faulty, (t * 50 + i) % 128 * kBlock, Bytes(kBlock, 1)).ok()) ++failed;
      }
    });
  }
  for (BoundedThread& thread : threads) thread.Join();
  EXPECT_EQ(failed.load(), 50);
  EXPECT_EQ(faulty.counters().injected[Op::kWrite], 50u);
  EXPECT_EQ(faulty.counters().matched, 200u);
}

// --- ReadOnlyGuard ---

TEST(ReadOnlyGuardTest, PassesReadsThrough) {
  auto memory = NewMemory();
  memory->Fill(kBlock, Bytes(kBlock, 9));
  ReadOnlyGuard guard(*memory,
                      [](const Request& r) { ADD_FAILURE() << "unexpected " << OpName(r.op); });
  std::vector<std::byte> block(kBlock);
  ASSERT_TRUE(ReadAt(guard, kBlock, block).ok());
  EXPECT_EQ(block, Bytes(kBlock, 9));
  EXPECT_EQ(guard.violations(), 0u);
}

TEST(ReadOnlyGuardTest, RefusesEveryModifyingRequestWithoutTouchingTheSource) {
  auto memory = NewMemory();
  memory->Fill(0, Bytes(kDeviceSize, 5));
  CountingDevice counted(*memory);
  std::vector<Op> reported;
  ReadOnlyGuard guard(counted, [&](const Request& r) { reported.push_back(r.op); });
  const auto data = Bytes(kBlock, 1);
  std::vector<std::byte> block(kBlock);
  Request fua_read = Request::Read(0, block);
  fua_read.flags = kFua;
  const Request attempts[] = {Request::Write(0, data),
                              Request::Write(0, data, kFua),
                              Request::Discard(0, kBlock),
                              Request::WriteZeroes(0, kBlock),
                              Request::Flush(),
                              fua_read};
  for (const Request& attempt : attempts) {
    EXPECT_EQ(SubmitAndWait(guard, attempt).code(), absl::StatusCode::kFailedPrecondition)
        << OpName(attempt.op);
  }
  EXPECT_EQ(reported, (std::vector<Op>{Op::kWrite, Op::kWrite, Op::kDiscard, Op::kWriteZeroes,
                                       Op::kFlush, Op::kRead}));
  EXPECT_EQ(guard.violations(), 6u);
  const Counts counts = counted.Snapshot();
  EXPECT_EQ(std::accumulate(counts.submitted.values.begin(), counts.submitted.values.end(), 0u), 0u)
      << "a refused request reached the source";
  EXPECT_EQ(memory->Contents(), Bytes(kDeviceSize, 5));
}

// --- DelayDevice ---

TEST(DelayDeviceTest, CompletesOnAWorkerThreadNeverInline) {
  auto memory = NewMemory();
  DelayDevice delayed(*memory, {.min_delay = 0us, .max_delay = 0us});
  Batch batch;
  batch.AddWrite(0, kBlock, 1);
  batch.AddRead(kBlock, kBlock);
  batch.Add(Request::Flush());
  batch.AddWrite(kDeviceSize, kBlock, 1);  // invalid: fails, still not inline
  batch.SubmitAll(delayed);
  batch.Wait();
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(batch.outcome(i).completions, 1);
    EXPECT_NE(batch.outcome(i).thread, std::this_thread::get_id()) << "request " << i;
  }
  EXPECT_EQ(batch.outcome(3).status.code(), absl::StatusCode::kOutOfRange);
}

TEST(DelayDeviceTest, CompletesOutOfOrder) {
  auto memory = NewMemory();
  DelayDevice delayed(*memory, {.min_delay = 0us, .max_delay = 2000us, .seed = 3});
  Batch batch;
  for (int i = 0; i < 64; ++i) batch.AddWrite(i * kBlock, kBlock, i + 1);
  batch.SubmitAll(delayed);
  batch.Wait();
  std::vector<size_t> order = batch.Order();
  ASSERT_EQ(order.size(), 64u);
  EXPECT_FALSE(std::is_sorted(order.begin(), order.end()));
  const std::vector<std::byte> contents = memory->Contents();
  for (int i = 0; i < 64; ++i) EXPECT_EQ(contents[i * kBlock], std::byte(i + 1));
}

TEST(DelayDeviceTest, WaitsAtLeastTheMinimumDelay) {
  auto memory = NewMemory();
  DelayDevice delayed(*memory, {.min_delay = 20ms, .max_delay = 20ms});
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(Flush(delayed).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
}

TEST(DelayDeviceTest, DestructorForwardsPendingRequestsAndWaitsForThem) {
  auto memory = NewMemory();
  Batch batch;
  for (int i = 0; i < 16; ++i) batch.AddWrite(i * kBlock, kBlock, i + 1);
  const auto start = std::chrono::steady_clock::now();
  {
    // An asynchronous inner device: the outer destructor must wait for it too.
    DelayDevice slow(*memory, {.min_delay = 20ms, .max_delay = 20ms});
    {
      DelayDevice parked(slow, {.min_delay = 1h, .max_delay = 1h});
      batch.SubmitAll(parked);
    }
    EXPECT_EQ(batch.Order().size(), 16u) << "the destructor returned before completions";
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the destructor kept the delay";
  const std::vector<std::byte> contents = memory->Contents();
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(batch.outcome(i).completions, 1);
    EXPECT_EQ(contents[i * kBlock], std::byte(i + 1));
  }
}

// --- CountingDevice ---

TEST(CountingDeviceTest, CountsRequestsBytesAndFlags) {
  auto memory = NewMemory();
  CountingDevice counted(*memory);
  std::vector<std::byte> block(kBlock);
  ASSERT_TRUE(WriteAt(counted, 0, Bytes(4096, 1)).ok());
  ASSERT_TRUE(WriteAt(counted, 4096, Bytes(1024, 2), kFua).ok());
  ASSERT_TRUE(ReadAt(counted, 0, block).ok());
  ASSERT_TRUE(Discard(counted, 0, 1024, kPreflush).ok());
  ASSERT_TRUE(Flush(counted).ok());
  ASSERT_FALSE(WriteAt(counted, kDeviceSize, Bytes(kBlock, 3)).ok());
  Counts counts = counted.Snapshot();
  EXPECT_EQ(counts.submitted[Op::kWrite], 3u);
  EXPECT_EQ(counts.completed[Op::kWrite], 3u);
  EXPECT_EQ(counts.failed[Op::kWrite], 1u);
  EXPECT_EQ(counts.bytes_submitted[Op::kWrite], 4096u + 1024 + kBlock);
  EXPECT_EQ(counts.bytes_completed[Op::kWrite], 4096u + 1024);
  EXPECT_EQ(counts.submitted[Op::kRead], 1u);
  EXPECT_EQ(counts.bytes_completed[Op::kRead], kBlock);
  EXPECT_EQ(counts.bytes_completed[Op::kDiscard], 1024u);
  EXPECT_EQ(counts.completed[Op::kFlush], 1u);
  EXPECT_EQ(counts.failed[Op::kFlush], 0u);
  EXPECT_EQ(counts.fua, 1u);
  EXPECT_EQ(counts.preflush, 1u);
  EXPECT_EQ(counts.total_in_flight, 0u);
  EXPECT_EQ(counts.max_total_in_flight, 1u) << "inline completions never overlap";
  counted.Reset();
  counts = counted.Snapshot();
  EXPECT_EQ(counts.submitted[Op::kWrite], 0u);
  EXPECT_EQ(counts.bytes_completed[Op::kWrite], 0u);
  EXPECT_EQ(counts.fua, 0u);
  EXPECT_EQ(counts.max_total_in_flight, 0u);
}

TEST(CountingDeviceTest, TracksRequestsInFlightFromConcurrentSubmitters) {
  auto memory = NewMemory();
  auto parked = std::make_unique<DelayDevice<MemoryDevice>>(
      *memory, DelayOptions{.min_delay = 1h, .max_delay = 1h});
  CountingDevice counted(*parked);
  std::vector<Batch> batches(4);
  std::deque<BoundedThread> threads;
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 4; ++i) {
      batches[t].AddWrite((t * 8 + i) * kBlock, kBlock, 1);
      batches[t].AddRead((t * 8 + 4 + i) * kBlock, kBlock);
    }
    threads.emplace_back([&, t] { batches[t].SubmitAll(counted); });
  }
  for (BoundedThread& thread : threads) thread.Join();
  Counts counts = counted.Snapshot();
  EXPECT_EQ(counts.total_in_flight, 32u);
  EXPECT_EQ(counts.max_total_in_flight, 32u);
  EXPECT_EQ(counts.in_flight[Op::kWrite], 16u);
  EXPECT_EQ(counts.max_in_flight[Op::kRead], 16u);
  EXPECT_EQ(counts.completed[Op::kWrite], 0u);

  counted.Reset();  // keeps what is in flight
  parked.reset();   // completes everything
  for (Batch& batch : batches) batch.Wait();
  counts = counted.Snapshot();
  EXPECT_EQ(counts.total_in_flight, 0u);
  EXPECT_EQ(counts.in_flight[Op::kRead], 0u);
  EXPECT_EQ(counts.max_total_in_flight, 32u);
  EXPECT_EQ(counts.max_in_flight[Op::kWrite], 16u);
  EXPECT_EQ(counts.submitted[Op::kWrite], 0u);
  EXPECT_EQ(counts.completed[Op::kWrite], 16u);
}

TEST(CountingDeviceTest, ObserverSeesEachRequestBeforeTheDevice) {
  auto memory = NewMemory();
  CountingDevice counted(*memory);
  std::vector<std::pair<Op, uint64_t>> seen;
  counted.SetObserver([&](const Request& r) {
    seen.emplace_back(r.op, r.length);
    if (r.op == Op::kWrite) {
      EXPECT_EQ(memory->Contents()[r.offset], std::byte{0});
    }
  });
  std::vector<std::byte> block(kBlock);
  ASSERT_TRUE(WriteAt(counted, 0, Bytes(2048, 1)).ok());
  ASSERT_TRUE(ReadAt(counted, 0, block).ok());
  ASSERT_TRUE(Flush(counted).ok());
  counted.SetObserver(nullptr);
  ASSERT_TRUE(WriteAt(counted, 0, Bytes(kBlock, 2)).ok());
  EXPECT_EQ(seen, (std::vector<std::pair<Op, uint64_t>>{
                      {Op::kWrite, 2048}, {Op::kRead, kBlock}, {Op::kFlush, 0}}));
}

// --- RecordingDevice and crash replay ---

TEST(RecordingDeviceTest, LogsChangesInCompletionOrder) {
  auto memory = NewMemory();
  RecordingDevice recorder(*memory);
  std::vector<std::byte> block(kBlock);
  ASSERT_TRUE(WriteAt(recorder, 0, Bytes(kBlock, 1)).ok());
  ASSERT_TRUE(ReadAt(recorder, 0, block).ok());
  ASSERT_TRUE(WriteAt(recorder, 512, Bytes(kBlock, 2), kFua).ok());
  ASSERT_TRUE(Discard(recorder, 1024, kBlock).ok());
  ASSERT_TRUE(WriteZeroes(recorder, 1536, kBlock).ok());
  ASSERT_TRUE(Flush(recorder).ok());
  ASSERT_TRUE(WriteAt(recorder, 2048, Bytes(kBlock, 3), kPreflush).ok());
  ASSERT_FALSE(WriteAt(recorder, kDeviceSize, Bytes(kBlock, 4)).ok());

  const WriteLog log = recorder.Log();
  std::vector<Op> ops;
  for (const LogEntry& entry : log) ops.push_back(entry.op);
  EXPECT_EQ(ops, (std::vector<Op>{Op::kWrite, Op::kWrite, Op::kDiscard, Op::kWriteZeroes,
                                  Op::kFlush, Op::kFlush, Op::kWrite}));
  ASSERT_EQ(log.size(), 7u);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].index, i);
    EXPECT_LT(log[i].submitted_at, log[i].completed_at);
    if (i > 0) {
      EXPECT_LT(log[i - 1].completed_at, log[i].completed_at);
    }
  }
  EXPECT_EQ(log[0].data, Bytes(kBlock, 1));
  EXPECT_FALSE(log[0].fua);
  EXPECT_TRUE(log[1].fua);
  EXPECT_EQ(log[2].offset, 1024u);
  EXPECT_EQ(log[3].length, kBlock);
  EXPECT_EQ(log[5].submitted_at, log[6].submitted_at) << "the preflush is the write's";
  EXPECT_EQ(log[6].data, Bytes(kBlock, 3));
}

TEST(RecordingDeviceTest, ReplayRebuildsEveryIntermediateImage) {
  auto memory = NewMemory();
  std::vector<std::byte> initial(kDeviceSize);
  std::mt19937 rng(5);
  for (std::byte& b : initial) b = std::byte(rng() & 0xff);
  memory->Fill(0, initial);
  RecordingDevice recorder(*memory);
  std::vector<std::pair<size_t, std::vector<std::byte>>> snapshots;
  for (int i = 0; i < 60; ++i) {
    const uint64_t blocks = kDeviceSize / kBlock;
    const uint64_t length = (1 + rng() % 8) * kBlock;
    const uint64_t offset = rng() % (blocks - 8) * kBlock;
    const uint8_t flags = static_cast<uint8_t>(rng() % 4);
    switch (rng() % 5) {
      case 0:
        ASSERT_TRUE(Discard(recorder, offset, length, flags).ok());
        break;
      case 1:
        ASSERT_TRUE(WriteZeroes(recorder, offset, length, flags).ok());
        break;
      case 2:
        ASSERT_TRUE(Flush(recorder).ok());
        break;
      default:
        ASSERT_TRUE(WriteAt(recorder, offset, Bytes(length, 1 + i), flags).ok());
    }
    snapshots.emplace_back(recorder.Log().size(), memory->Contents());
  }
  const WriteLog log = recorder.Log();
  for (const auto& [entries, contents] : snapshots)
    EXPECT_EQ(ReplayUpTo(initial, log, entries), contents) << "after " << entries << " entries";
}

TEST(RecordingDeviceTest, ReplayMatchesAConcurrentAsynchronousWorkload) {
  auto memory = NewMemory();
  DelayDevice delayed(*memory, {.min_delay = 0us, .max_delay = 300us});
  RecordingDevice recorder(delayed);
  std::deque<BoundedThread> threads;
  for (int t = 0; t < 4; ++t) {
    // Each thread owns a quarter and waits for each request: overlaps are ordered.
    threads.emplace_back([&, t] {
      const uint64_t base = t * kDeviceSize / 4;
      for (int i = 0; i < 25; ++i) {
        const uint64_t offset = base + (i * 7 % 24) * kBlock;
        absl::Status status = i % 5 == 4 ? WriteZeroes(recorder, offset, 2 * kBlock)
                                         : WriteAt(recorder, offset, Bytes(4 * kBlock, i + 1));
        EXPECT_TRUE(status.ok()) << status;
      }
    });
  }
  for (BoundedThread& thread : threads) thread.Join();
  const WriteLog log = recorder.Log();
  EXPECT_EQ(log.size(), 100u);
  EXPECT_EQ(ReplayUpTo(std::vector<std::byte>(kDeviceSize), log, log.size()), memory->Contents());
}

LogEntry Entry(Op op, uint64_t block, uint8_t value, uint64_t submitted_at, uint64_t completed_at,
               bool fua = false) {
  LogEntry entry{.op = op, .fua = fua, .submitted_at = submitted_at, .completed_at = completed_at};
  if (op != Op::kFlush) {
    entry.offset = block * kBlock;
    entry.length = kBlock;
  }
  if (op == Op::kWrite) entry.data = Bytes(kBlock, value);
  return entry;
}

WriteLog Numbered(WriteLog log) {
  for (size_t i = 0; i < log.size(); ++i) log[i].index = i;
  return log;
}

// Ticks: a flush submitted at 4 covers what completed before 4, not entry 1
// (completed at 5, before the flush completed) nor entry 5 (submitted before it).
WriteLog HandmadeLog() {
  return Numbered({
      Entry(Op::kWrite, 0, 1, 0, 1),        // 0
      Entry(Op::kWrite, 1, 2, 2, 5),        // 1
      Entry(Op::kFlush, 0, 0, 4, 6),        // 2
      Entry(Op::kWrite, 2, 3, 7, 8, true),  // 3: FUA
      Entry(Op::kWrite, 3, 4, 9, 10),       // 4
      Entry(Op::kWrite, 0, 5, 3, 11),       // 5: overwrites entry 0
      Entry(Op::kFlush, 0, 0, 12, 13),      // 6
      Entry(Op::kWrite, 1, 6, 14, 15),      // 7
  });
}

TEST(CrashStateTest, DurableSetsFollowFlushSubmissionNotCompletion) {
  const WriteLog log = HandmadeLog();
  using Indexes = std::vector<size_t>;
  struct Expected {
    size_t entries;
    Indexes durable, undetermined;
  };
  const Expected expectations[] = {
      {0, {}, {}},
      {2, {}, {0, 1}},
      {3, {0}, {1}},
      {5, {0, 3}, {1, 4}},
      {6, {0, 3}, {1, 4, 5}},
      {7, {0, 1, 3, 4, 5}, {}},
      {8, {0, 1, 3, 4, 5}, {7}},
  };
  for (const Expected& expected : expectations) {
    const CrashState state = CrashStateAfter(log, expected.entries);
    EXPECT_EQ(state.durable, expected.durable) << "after " << expected.entries;
    EXPECT_EQ(state.undetermined, expected.undetermined) << "after " << expected.entries;
  }
}

TEST(CrashStateTest, TheLatestSubmittedCompletedFlushDecides) {
  const WriteLog log = Numbered({
      Entry(Op::kWrite, 0, 1, 0, 4),
      Entry(Op::kFlush, 0, 0, 5, 6),  // submitted after the write completed
      Entry(Op::kFlush, 0, 0, 2, 7),  // submitted before, completed later
  });
  EXPECT_EQ(CrashStateAfter(log, 2).durable, std::vector<size_t>{0});
  EXPECT_EQ(CrashStateAfter(log, 3).durable, std::vector<size_t>{0});
  const WriteLog early_only = Numbered({log[0], log[2]});
  EXPECT_EQ(CrashStateAfter(early_only, 2).undetermined, std::vector<size_t>{0});
}

TEST(CrashStateTest, CrashImagesApplyTheChosenSurvivorsInCompletionOrder) {
  const WriteLog log = HandmadeLog();
  const std::vector<std::byte> zeroes(4 * kBlock);
  auto blocks = [](const std::vector<std::byte>& image) {
    return std::vector<int>{int(image[0]), int(image[kBlock]), int(image[2 * kBlock]),
                            int(image[3 * kBlock])};
  };
  // Undetermined after 6 entries: 1 (block 1 = 2), 4 (block 3 = 4), 5 (block 0 = 5).
  EXPECT_EQ(blocks(CrashImage(zeroes, log, 6, {true, false, true})),
            (std::vector<int>{5, 2, 3, 0}));
  EXPECT_EQ(blocks(CrashImage(zeroes, log, 6, {false, true, false})),
            (std::vector<int>{1, 0, 3, 4}));
  std::set<std::vector<int>> images;
  for (int mask = 0; mask < 8; ++mask) {
    std::vector<int> image =
        blocks(CrashImage(zeroes, log, 6, {(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0}));
    EXPECT_EQ(image[2], 3) << "the FUA write is always there";
    images.insert(image);
  }
  EXPECT_EQ(images.size(), 8u);
  EXPECT_EQ(CrashImage(zeroes, log, 8, {true}), ReplayUpTo(zeroes, log, 8));
}

TEST(CrashStateTest, CrashImagesBracketWhatAMemoryDeviceKeeps) {
  auto memory = NewMemory(/*simulate_crashes=*/true);
  RecordingDevice recorder(*memory);
  ASSERT_TRUE(WriteAt(recorder, 0, Bytes(kBlock, 1)).ok());
  ASSERT_TRUE(Flush(recorder).ok());
  ASSERT_TRUE(WriteAt(recorder, kBlock, Bytes(kBlock, 2)).ok());
  ASSERT_TRUE(WriteAt(recorder, 2 * kBlock, Bytes(kBlock, 3), kFua).ok());
  ASSERT_TRUE(WriteAt(recorder, 0, Bytes(kBlock, 4)).ok());
  const WriteLog log = recorder.Log();
  const CrashState state = CrashStateAfter(log, log.size());
  EXPECT_EQ(state.durable, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(state.undetermined, (std::vector<size_t>{2, 4}));
  const std::vector<std::byte> zeroes(kDeviceSize);
  EXPECT_EQ(memory->Contents(), CrashImage(zeroes, log, log.size(), {true, true}));
  memory->SimulateCrash();
  EXPECT_EQ(memory->Contents(), CrashImage(zeroes, log, log.size(), {false, false}));
}

TEST(CrashStateTest, AWriteInFlightWhenAFlushIsSubmittedStaysUndetermined) {
  auto memory = NewMemory();
  // One worker forwards in submission order once the destructor drains it.
  auto parked = std::make_unique<DelayDevice<MemoryDevice>>(
      *memory, DelayOptions{.min_delay = 1h, .max_delay = 1h, .worker_threads = 1});
  RecordingDevice recorder(*parked);
  Batch batch;
  batch.AddWrite(0, kBlock, 1);
  batch.Add(Request::Flush());
  batch.SubmitAll(recorder);
  parked.reset();
  batch.Wait();
  const WriteLog log = recorder.Log();
  ASSERT_EQ(log.size(), 2u);
  ASSERT_EQ(log[0].op, Op::kWrite) << "the write completed before the flush";
  const CrashState state = CrashStateAfter(log, 2);
  EXPECT_TRUE(state.durable.empty());
  EXPECT_EQ(state.undetermined, std::vector<size_t>{0});
}

}  // namespace
}  // namespace blkclone

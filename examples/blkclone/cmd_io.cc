// blkclone write and blkclone read: bytes in and out through a clone, for
// scripts, tests and the demo.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "blkclone/aligned_buffer.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"
#include "commands.hpp"
#include "session.hpp"

namespace blkclone::cli {
namespace {

constexpr uint64_t kChunk = 1 << 20;

// A byte position or count in the clone, in whole sectors.
absl::StatusOr<uint64_t> SectorMultiple(absl::string_view what, absl::string_view text) {
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t bytes, ParseSize(what, text));
  if (bytes % kSectorSize != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", text, ": not a multiple of the clone's block size (512 bytes)"));
  return bytes;
}

// [offset, offset + length) lies inside the clone.
absl::Status CheckRange(const CloneRecord& record, uint64_t offset, uint64_t length) {
  const uint64_t size = *record.table.length_sectors * kSectorSize;
  if (offset <= size && length <= size - offset) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrCat("bytes ", offset, "..", offset + length,
                                            " reach past the end of clone ", record.name, " (",
                                            size, " bytes)"));
}

// The whole of FILE ("-": stdin), so that its size is checked before anything is written.
absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-")
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus(errno, absl::StrCat("FILE ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Opens the named clone for a short piece of I/O, without background hydration.
// The caller holds the clone's lock for as long as the session lives.
absl::StatusOr<std::unique_ptr<Session>> OpenForIo(const ParsedArgs& args,
                                                   const CloneRecord& record,
                                                   absl::string_view command) {
  BLKCLONE_ASSIGN_OR_RETURN(Backend backend, BackendFromArgs(args));
  HydratorOptions hydrator = HydratorDefaults(record.table);
  hydrator.start_enabled = false;
  return Session::Open(record, {.backend = backend,
                                .hydrator = hydrator,
                                .log_prefix = absl::StrCat("blkclone ", command, ": ")});
}

}  // namespace

absl::StatusOr<int> RunWrite(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 3, 3, "NAME OFFSET FILE"));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t offset, SectorMultiple("OFFSET", args.positional[1]));
  BLKCLONE_ASSIGN_OR_RETURN(std::string data, ReadInput(args.positional[2]));
  if (data.size() % kSectorSize != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("FILE ", args.positional[2], ": ", data.size(),
                     " bytes, not a multiple of the clone's block size (512 bytes)"));
  BLKCLONE_RETURN_IF_ERROR(CheckRange(record, offset, data.size()));
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "write"));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, OpenForIo(args, record, "write"));
  CliClone& clone = session->clone();
  AlignedBuffer buffer(kChunk, clone.info().memory_alignment);
  for (uint64_t done = 0; done < data.size(); done += kChunk) {
    const uint64_t length = std::min<uint64_t>(kChunk, data.size() - done);
    std::memcpy(buffer.data(), data.data() + done, length);
    BLKCLONE_RETURN_IF_ERROR(WriteAt(clone, offset + done, buffer.span().first(length)));
  }
  BLKCLONE_RETURN_IF_ERROR(Flush(clone));
  BLKCLONE_RETURN_IF_ERROR(session->Close());
  std::printf("wrote %zu bytes at offset %llu of clone %s, flushed\n", data.size(),
              static_cast<unsigned long long>(offset), record.name.c_str());
  return kExitOk;
}

absl::StatusOr<int> RunRead(const ParsedArgs& args) {
  BLKCLONE_RETURN_IF_ERROR(ExpectPositional(args, 3, 4, "NAME OFFSET LENGTH [FILE]"));
  BLKCLONE_ASSIGN_OR_RETURN(const StateDir dir, StateDir::FromArgs(args));
  BLKCLONE_ASSIGN_OR_RETURN(CloneRecord record, dir.Load(args.positional[0]));
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t offset, SectorMultiple("OFFSET", args.positional[1]));
  BLKCLONE_ASSIGN_OR_RETURN(uint64_t length, SectorMultiple("LENGTH", args.positional[2]));
  BLKCLONE_RETURN_IF_ERROR(CheckRange(record, offset, length));
  std::FILE* out = stdout;
  if (args.positional.size() == 4) {
    out = std::fopen(args.positional[3].c_str(), "wb");
    if (out == nullptr) return ErrnoStatus(errno, absl::StrCat("FILE ", args.positional[3]));
  }
  struct Closer {
    std::FILE* file;
    ~Closer() {
      if (file != stdout) std::fclose(file);
    }
  } closer{out};
  BLKCLONE_ASSIGN_OR_RETURN(CloneLock lock, CloneLock::Acquire(dir, record.name, "read"));
  BLKCLONE_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, OpenForIo(args, record, "read"));
  CliClone& clone = session->clone();
  AlignedBuffer buffer(kChunk, clone.info().memory_alignment);
  for (uint64_t done = 0; done < length; done += kChunk) {
    const uint64_t chunk = std::min(kChunk, length - done);
    BLKCLONE_RETURN_IF_ERROR(ReadAt(clone, offset + done, buffer.span().first(chunk)));
    if (std::fwrite(buffer.data(), 1, chunk, out) != chunk)
      return ErrnoStatus(errno, "write output");
  }
  if (std::fflush(out) != 0) return ErrnoStatus(errno, "write output");
  BLKCLONE_RETURN_IF_ERROR(session->Close());
  return kExitOk;
}

}  // namespace blkclone::cli

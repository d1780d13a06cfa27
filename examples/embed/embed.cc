// An application that clones a device through the library: the clone is
// usable at once (here: written to), hydrates in the background at a limited
// rate, survives a restart, and is finalized into a plain copy.
//
//   embed SOURCE DESTINATION METADATA
//
// Each may be a file, a block device, an NBD URI (the source) or an rbd: name.
#include <cstdio>
#include <cstring>
#include <vector>

#include "blkclone/clone_session.hpp"
#include "blkclone/device_registry.hpp"
#include "blkclone/status.hpp"
#include "blkclone/sync_io.hpp"

namespace {

absl::StatusOr<blkclone::SessionDevices> OpenDevices(char** paths) {
  BLKCLONE_ASSIGN_OR_RETURN(blkclone::AnyBlockDevice source,
                            blkclone::OpenDeviceByName(paths[0], {.read_only = true}));
  BLKCLONE_ASSIGN_OR_RETURN(blkclone::AnyBlockDevice dest,
                            blkclone::OpenDeviceByName(paths[1], {.read_only = false}));
  BLKCLONE_ASSIGN_OR_RETURN(blkclone::AnyBlockDevice meta,
                            blkclone::OpenDeviceByName(paths[2], {.read_only = false}));
  return blkclone::SessionDevices{std::move(source), std::move(dest), std::move(meta)};
}

absl::Status Run(char** paths) {
  const blkclone::SessionOptions options = {.hydration = {.threshold = 8, .batch_size = 4},
                                            .rate_limit = 64 << 20};
  {
    // Start the clone and use it at once: this write lands before hydration ends.
    BLKCLONE_ASSIGN_OR_RETURN(blkclone::SessionDevices devices, OpenDevices(paths));
    BLKCLONE_ASSIGN_OR_RETURN(auto session,
                              blkclone::CloneSession::Create(std::move(devices), 64 << 10, options));
    std::vector<std::byte> block(4096);  // whole blocks only
    const std::string_view note = "written through the clone\n";
    std::memcpy(block.data(), note.data(), note.size());
    BLKCLONE_RETURN_IF_ERROR(blkclone::WriteAt(session->clone(), 0, block, blkclone::kFua));
    BLKCLONE_RETURN_IF_ERROR(session->Close());  // e.g. the application restarts
  }
  BLKCLONE_ASSIGN_OR_RETURN(blkclone::SessionDevices devices, OpenDevices(paths));
  BLKCLONE_ASSIGN_OR_RETURN(auto session, blkclone::CloneSession::Open(std::move(devices), options));
  BLKCLONE_RETURN_IF_ERROR(session->HydrateAll([](const blkclone::HydrationProgress& p) {
    std::fprintf(stderr, "\rhydrated %llu of %llu bytes", (unsigned long long)p.hydrated_bytes,
                 (unsigned long long)p.total_bytes);
    return true;
  }));
  BLKCLONE_RETURN_IF_ERROR(session->Finalize());
  std::printf("\nfinished: %s is a copy of %s, with the write\n", paths[1], paths[0]);
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s SOURCE DESTINATION METADATA\n", argv[0]);
    return 2;
  }
  if (absl::Status status = Run(argv + 1); !status.ok()) {
    std::fprintf(stderr, "%s: %s\n", argv[0], std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

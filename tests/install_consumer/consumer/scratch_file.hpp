// ScratchFile: creates an empty 1 MiB file at path; false on failure.
#pragma once

#include <fcntl.h>
#include <unistd.h>

inline bool ScratchFile(const char* path) {
  int fd = ::open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
  bool ok = fd >= 0 && ::ftruncate(fd, 1 << 20) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

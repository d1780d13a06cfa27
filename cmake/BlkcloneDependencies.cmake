# Every dependency comes from a Debian package; nothing is downloaded.
find_package(absl REQUIRED)
find_package(Boost 1.74 REQUIRED)  # intrusive and container are header-only
find_package(Threads REQUIRED)
find_package(nlohmann_json 3 REQUIRED)  # JSON output; header-only, private to the core
find_package(PkgConfig REQUIRED)
pkg_check_modules(liburing IMPORTED_TARGET liburing>=2.0)  # Debian ships no CMake config
# Optional: blkclone::nbd (remote NBD sources) is built only where libnbd is found.
pkg_check_modules(libnbd IMPORTED_TARGET libnbd)
# Optional: blkclone::fuse_export is built only where libfuse3 is found.
pkg_check_modules(fuse3 IMPORTED_TARGET fuse3)
# Optional: blkclone::rbd (Ceph RBD images) is built only where librbd is found.
find_package(Ceph)

# blkclone::testing (test devices, conformance suite) is built only where
# GoogleTest is found; the tests and the benchmarks need it.
if(BLKCLONE_BUILD_TESTS OR BLKCLONE_BUILD_BENCHMARKS)
  find_package(GTest REQUIRED)
else()
  find_package(GTest QUIET)
endif()
if(BLKCLONE_BUILD_TESTS)
  find_package(rapidcheck REQUIRED)
endif()
if(BLKCLONE_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()

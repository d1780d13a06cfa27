# Helpers shared by every target of the project.

# Warnings for the project's own code.
function(blkclone_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                         $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>
                         $<$<BOOL:${BLKCLONE_WARNINGS_AS_ERRORS}>:-Werror>)
endfunction()

# blkclone_add_library(NAME <name> EXPORT_NAME <name> [INCLUDE_DIR <dir>] SOURCES ...
#                      DEPS ... [PRIVATE_DEPS ...])
# A static library, alias blkclone::<export name>, that carries C++20 to its
# users. Its public headers are the *.hpp below INCLUDE_DIR (default: include/
# next to the calling CMakeLists), declared as the target's HEADERS file set:
# that directory is the only one it adds to its users' include path, so a part
# sees the headers of the parts it links and no others. With BLKCLONE_INSTALL
# the library and exactly those headers go into the one export set.
function(blkclone_add_library)
  cmake_parse_arguments(ARG "" "NAME;EXPORT_NAME;INCLUDE_DIR" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  if(NOT ARG_INCLUDE_DIR)
    set(ARG_INCLUDE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/include)
  endif()
  add_library(${ARG_NAME} STATIC ${ARG_SOURCES})
  add_library(blkclone::${ARG_EXPORT_NAME} ALIAS ${ARG_NAME})
  set_target_properties(${ARG_NAME} PROPERTIES EXPORT_NAME ${ARG_EXPORT_NAME}
                                               POSITION_INDEPENDENT_CODE ON)
  # A header added under INCLUDE_DIR joins the set at the next build.
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS ${ARG_INCLUDE_DIR}/*.hpp)
  target_sources(${ARG_NAME} PUBLIC FILE_SET HEADERS BASE_DIRS ${ARG_INCLUDE_DIR} FILES ${headers})
  target_compile_features(${ARG_NAME} PUBLIC cxx_std_20)
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  blkclone_target_warnings(${ARG_NAME})
  if(BLKCLONE_INSTALL)
    install(TARGETS ${ARG_NAME} EXPORT blkcloneTargets FILE_SET HEADERS)
  endif()
endfunction()

# blkclone_add_test(<name> SOURCES ... DEPS ... [WRAPPER command...]): a
# GoogleTest binary whose tests ctest discovers one by one; with WRAPPER, one
# ctest test runs the whole binary under that command instead (e.g. a script
# that starts a server around it; exit status 77 means skipped). Every test
# gets a TIMEOUT: a hang fails after BLKCLONE_TEST_TIMEOUT seconds (the
# wrapped run, which also starts its server, after twice that).
set(BLKCLONE_TEST_TIMEOUT 300)
function(blkclone_add_test name)
  cmake_parse_arguments(ARG "USES_LIBFUSE" "" "SOURCES;DEPS;WRAPPER" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  # TSan's default options (tests/sanitizers/tsan_defaults.cc), except where
  # libfuse's own threads run: they end inside an ignored call.
  if(NOT ARG_USES_LIBFUSE)
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/sanitizers/tsan_defaults.cc)
  endif()
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} blkclone::testing GTest::gmock
                                        GTest::gtest_main)
  blkclone_target_warnings(${name})
  if(ARG_WRAPPER)
    add_test(NAME ${name} COMMAND ${ARG_WRAPPER} $<TARGET_FILE:${name}>)
    math(EXPR timeout "2 * ${BLKCLONE_TEST_TIMEOUT}")
    set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} SKIP_RETURN_CODE 77)
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT ${BLKCLONE_TEST_TIMEOUT})
  endif()
endfunction()

# Installs one export set; consumers use find_package(blkclone [COMPONENTS ...]).
include(CMakePackageConfigHelpers)
set(BLKCLONE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/blkclone)
install(EXPORT blkcloneTargets NAMESPACE blkclone:: DESTINATION ${BLKCLONE_CMAKE_DIR})
configure_package_config_file(cmake/blkcloneConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/blkcloneConfig.cmake INSTALL_DESTINATION ${BLKCLONE_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/blkcloneConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/blkcloneConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/blkcloneConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindCeph.cmake
        DESTINATION ${BLKCLONE_CMAKE_DIR})

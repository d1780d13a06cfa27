# FindCeph: librbd and librados, which Debian ships without pkg-config or
# CMake files. Defines Ceph_FOUND and the imported target Ceph::rbd (librbd
# with librados, and their headers).
find_path(Ceph_INCLUDE_DIR rbd/librbd.h)
find_library(Ceph_RBD_LIBRARY rbd)
find_library(Ceph_RADOS_LIBRARY rados)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Ceph
  REQUIRED_VARS Ceph_RBD_LIBRARY Ceph_RADOS_LIBRARY Ceph_INCLUDE_DIR)
if(Ceph_FOUND AND NOT TARGET Ceph::rbd)
  add_library(Ceph::rbd INTERFACE IMPORTED)
  set_target_properties(Ceph::rbd PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${Ceph_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${Ceph_RBD_LIBRARY};${Ceph_RADOS_LIBRARY}")
endif()
mark_as_advanced(Ceph_INCLUDE_DIR Ceph_RBD_LIBRARY Ceph_RADOS_LIBRARY)

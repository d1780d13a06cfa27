# Installs the build tree into a scratch prefix, then, for each part in PARTS
# (separated by commas), configures, builds and runs
# tests/install_consumer/consumer as a separate project that asks
# find_package(blkclone) for that part alone.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}): ${ARGN}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
string(REPLACE "," ";" parts "${PARTS}")
foreach(part IN LISTS parts)
  set(build ${WORK_DIR}/build_${part})
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install_consumer/consumer -B ${build}
      -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DPART=${part})
  run(${CMAKE_COMMAND} --build ${build})
  run(${build}/consumer_${part} ${WORK_DIR}/scratch_${part})
endforeach()

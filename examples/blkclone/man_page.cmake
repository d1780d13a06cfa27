# Writes the manual page that `blkclone help --man` prints to OUTPUT.
# Usage: cmake -DBLKCLONE=<binary> -DOUTPUT=<file> -P man_page.cmake
execute_process(COMMAND ${BLKCLONE} help --man OUTPUT_FILE ${OUTPUT} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${BLKCLONE} help --man failed: ${result}")
endif()

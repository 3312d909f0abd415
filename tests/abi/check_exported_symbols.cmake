# Compares the dynamic symbols libminimax.so defines with the committed list.
# cmake -DNM=nm -DLIBRARY=libminimax.so -DEXPECTED=exported_symbols.txt -P check_exported_symbols.cmake
execute_process(COMMAND ${NM} -D --defined-only ${LIBRARY}
  OUTPUT_VARIABLE _out RESULT_VARIABLE _rc ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${NM} failed on ${LIBRARY}: ${_err}")
endif()
string(REPLACE "\n" ";" _lines "${_out}")
set(_actual "")
foreach(_line IN LISTS _lines)
  # "<address> <type> <name>[@@version]"; type A entries are the version nodes themselves.
  if(_line MATCHES "^[0-9a-fA-F]+ ([A-Za-z]) ([^@ ]+)")
    if(NOT CMAKE_MATCH_1 STREQUAL "A")
      list(APPEND _actual "${CMAKE_MATCH_2}")
    endif()
  endif()
endforeach()
list(SORT _actual)
list(REMOVE_DUPLICATES _actual)

file(STRINGS ${EXPECTED} _expected REGEX "^[^#]")
list(SORT _expected)

set(_added ${_actual})
list(REMOVE_ITEM _added ${_expected})
set(_removed ${_expected})
if(_actual)
  list(REMOVE_ITEM _removed ${_actual})
endif()
if(_added OR _removed)
  string(REPLACE ";" " " _added "${_added}")
  string(REPLACE ";" " " _removed "${_removed}")
  message(FATAL_ERROR "The exported symbols of ${LIBRARY} changed.\n"
    "  exported but not in the list: ${_added}\n"
    "  in the list but not exported: ${_removed}\n"
    "Removing or renaming one is an ABI break; adding one means updating ${EXPECTED}.")
endif()
list(LENGTH _actual _n)
message(STATUS "${_n} exported symbols, as listed")

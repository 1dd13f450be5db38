# vitals_add_probe(NAME SOURCES... [LIBS ...]): builds the probe plugin NAME.so (target
# probe_NAME) from SOURCES, linked with LIBS: a MODULE with no "lib" prefix, hidden visibility (only
# vitals_probe_entry is exported) and -Wl,--no-undefined (a missing library fails the link, not the
# agent's dlopen). The same definition builds the shipped plugins in-tree and is installed with the
# SDK (find_package(vitals)). Optional settings, read when the function is called:
#   VITALS_PROBE_OUTPUT_DIRECTORY  where NAME.so is written (default: the current binary folder)
#   VITALS_PROBE_INSTALL_DIR       if set, `cmake --install` copies NAME.so there
function(vitals_add_probe name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  if(NOT ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "vitals_add_probe(${name}): no source files")
  endif()
  add_library(probe_${name} MODULE ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(probe_${name} PRIVATE vitals::probe ${ARG_LIBS})
  set_target_properties(probe_${name} PROPERTIES
    PREFIX "" OUTPUT_NAME "${name}"
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(VITALS_PROBE_OUTPUT_DIRECTORY)
    set_target_properties(probe_${name} PROPERTIES
      LIBRARY_OUTPUT_DIRECTORY "${VITALS_PROBE_OUTPUT_DIRECTORY}")
  endif()
  target_link_options(probe_${name} PRIVATE -Wl,--no-undefined)
  if(VITALS_PROBE_INSTALL_DIR)
    install(TARGETS probe_${name} LIBRARY DESTINATION "${VITALS_PROBE_INSTALL_DIR}")
  endif()
endfunction()

# vitals_add_probe(NAME source.cpp [LIBS ...]): builds plugins/<NAME> into <plugindir>/NAME.so.
function(vitals_add_probe name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  add_library(probe_${name} MODULE ${ARG_UNPARSED_ARGUMENTS})
  target_include_directories(probe_${name} PRIVATE "${PROJECT_SOURCE_DIR}/plugins/include")
  target_link_libraries(probe_${name} PRIVATE ${ARG_LIBS})
  set_target_properties(probe_${name} PROPERTIES
    PREFIX "" OUTPUT_NAME "${name}"
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY "${VITALS_BUILD_PLUGINDIR}")
  target_link_options(probe_${name} PRIVATE -Wl,--no-undefined)
  install(TARGETS probe_${name} LIBRARY DESTINATION "${VITALS_PLUGINDIR}")
endfunction()

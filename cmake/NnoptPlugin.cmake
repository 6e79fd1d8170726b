# nnopt_add_plugin(KIND backend|model|technique NAME name SOURCES ... [LIBS ...])
# Builds build/plugins/nnopt_<kind>_<name>.so, exporting only the descriptor.
function(nnopt_add_plugin)
  cmake_parse_arguments(P "" "KIND;NAME" "SOURCES;LIBS" ${ARGN})
  if(NOT P_KIND OR NOT P_NAME OR NOT P_SOURCES)
    message(FATAL_ERROR "nnopt_add_plugin: KIND, NAME and SOURCES are required")
  endif()
  set(target nnopt_${P_KIND}_${P_NAME})
  add_library(${target} MODULE ${P_SOURCES})
  target_link_libraries(${target} PRIVATE nnopt_sdk ${P_LIBS})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${NNOPT_PLUGIN_BUILD_DIR})
  install(TARGETS ${target} LIBRARY DESTINATION ${NNOPT_PLUGIN_INSTALL_DIR})
endfunction()

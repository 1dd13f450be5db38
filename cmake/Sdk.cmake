# Installs the plugin SDK (component `dev`): the headers, a CMake package (find_package(vitals),
# version = the project's) and a pkg-config file (vitals-probe.pc), both relocatable.
include(CMakePackageConfigHelpers)

set(VITALS_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/vitals")
set(VITALS_PKGCONFIG_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
set(VITALS_ABI_MAJOR 1)

# probe.h and probe.hpp are the ABI; net.hpp (POSIX only) and poco_net.hpp (for plugins that use
# Poco themselves) keep a run inside its deadline, as the shipped plugins do.
install(FILES plugins/include/vitals/probe.h plugins/include/vitals/probe.hpp
              plugins/include/vitals/net.hpp plugins/include/vitals/poco_net.hpp
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/vitals" COMPONENT dev)

install(TARGETS vitals_probe EXPORT vitals-targets COMPONENT dev)
install(EXPORT vitals-targets NAMESPACE vitals:: DESTINATION "${VITALS_CMAKE_DIR}" COMPONENT dev)
configure_package_config_file(cmake/vitals-config.cmake.in
  "${CMAKE_BINARY_DIR}/sdk/vitals-config.cmake"
  INSTALL_DESTINATION "${VITALS_CMAKE_DIR}" PATH_VARS VITALS_PLUGINDIR)
write_basic_package_version_file("${CMAKE_BINARY_DIR}/sdk/vitals-config-version.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_BINARY_DIR}/sdk/vitals-config.cmake"
              "${CMAKE_BINARY_DIR}/sdk/vitals-config-version.cmake" cmake/VitalsProbe.cmake
        DESTINATION "${VITALS_CMAKE_DIR}" COMPONENT dev)

# prefix=${pcfiledir}/../..: found from the .pc file itself, so any --prefix works.
file(RELATIVE_PATH VITALS_PC_TO_PREFIX "/prefix/${VITALS_PKGCONFIG_DIR}" "/prefix")
string(REGEX REPLACE "/$" "" VITALS_PC_TO_PREFIX "${VITALS_PC_TO_PREFIX}")
configure_file(cmake/vitals-probe.pc.in "${CMAKE_BINARY_DIR}/sdk/vitals-probe.pc" @ONLY)
install(FILES "${CMAKE_BINARY_DIR}/sdk/vitals-probe.pc" DESTINATION "${VITALS_PKGCONFIG_DIR}"
        COMPONENT dev)

# Debian packages with CPack: `cpack -G DEB` in a tree configured with -DCMAKE_INSTALL_PREFIX=/usr
# gives vitals_<version>_<arch>.deb (the agent, its plugins, /etc/vitals/vitals.yaml as a conffile,
# the systemd units of packaging/systemd/) and vitals-dev_<version>_<arch>.deb (the plugin SDK).
# Dependencies are computed from the binaries by dpkg-shlibdeps (package dpkg-dev).

# systemd units: whatever packaging/systemd/ holds when the tree is configured.
if(EXISTS "${PROJECT_SOURCE_DIR}/packaging/systemd")
  install(DIRECTORY packaging/systemd/ DESTINATION "lib/systemd/system" COMPONENT runtime
          FILES_MATCHING PATTERN "*.service" PATTERN "*.socket" PATTERN "*.timer"
                         PATTERN "*.target" PATTERN "*.path")
endif()

set(CPACK_PACKAGE_NAME vitals)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "vitals")
set(CPACK_PACKAGE_CONTACT "vitals maintainers <vitals@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_GENERATOR DEB)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME vitals)
set(CPACK_DEBIAN_RUNTIME_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "readiness and health probe agent for services and containers
vitals runs deep checks (PostgreSQL, Ollama, MCP, HTTP, TCP, Nagios-style commands) as
plugins, serves /health, /livez, /readyz and /metrics, signals readiness to s6 and
systemd, and answers Docker HEALTHCHECKs with `vitals check`.")
# /etc/vitals/vitals.yaml is a conffile: dpkg keeps the admin's edits across upgrades.
file(WRITE "${CMAKE_BINARY_DIR}/deb/runtime/conffiles" "${CMAKE_INSTALL_FULL_SYSCONFDIR}/vitals/vitals.yaml\n")
if(EXISTS "${PROJECT_SOURCE_DIR}/packaging/debian")  # not in the container build context
  configure_file(packaging/debian/postinst "${CMAKE_BINARY_DIR}/deb/runtime/postinst" COPYONLY)
  configure_file(packaging/debian/postrm "${CMAKE_BINARY_DIR}/deb/runtime/postrm" COPYONLY)
endif()
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    "${CMAKE_BINARY_DIR}/deb/runtime/conffiles;${CMAKE_BINARY_DIR}/deb/runtime/postinst;${CMAKE_BINARY_DIR}/deb/runtime/postrm")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME vitals-dev)
set(CPACK_DEBIAN_DEV_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "vitals (= ${PROJECT_VERSION})")
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS "cmake, pkg-config, g++, libpoco-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
    "plugin SDK for vitals
Headers (vitals/probe.h, probe.hpp, net.hpp, poco_net.hpp), a CMake package
(find_package(vitals), vitals_add_probe()) and vitals-probe.pc to build probe
plugins out of tree.")

# The package is only right for /usr: the binary finds /etc/vitals and its plugins relative to
# itself, from the paths the tree was configured with.
set(CPACK_PROJECT_CONFIG_FILE "${CMAKE_BINARY_DIR}/deb/project-config.cmake")
file(WRITE "${CPACK_PROJECT_CONFIG_FILE}" "
if(CPACK_GENERATOR STREQUAL \"DEB\" AND NOT \"${CMAKE_INSTALL_PREFIX}\" STREQUAL \"/usr\")
  message(FATAL_ERROR \"vitals: a Debian package needs a tree configured with -DCMAKE_INSTALL_PREFIX=/usr (this one: ${CMAKE_INSTALL_PREFIX})\")
endif()
")
include(CPack)

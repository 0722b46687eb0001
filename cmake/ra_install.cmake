# ra_install.cmake — installs the headers and exports the package `ra`.
#
#   find_package(ra 0.1 REQUIRED)              -> ra::core, ra::cpu, ra::ra
#   find_package(ra 0.1 REQUIRED COMPONENTS cuda) -> also ra::cuda (and ra_cuda.cmake helpers)
#
# The CPU targets and the CUDA target are exported separately: a package installed with CUDA
# still works for a consumer without a CUDA toolkit (ra::cuda is then simply absent and the
# `cuda` component is not found). No CUDA architectures are recorded: consumers choose theirs.
include_guard(GLOBAL)

set(RA_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/ra"
    CACHE STRING "Where the package configuration files are installed, relative to the prefix")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/ra" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(TARGETS ra_core ra_cpu ra_ra EXPORT raTargets)
install(EXPORT raTargets NAMESPACE ra:: DESTINATION "${RA_INSTALL_CMAKEDIR}")
if(RA_HAVE_CUDA)
  install(TARGETS ra_cuda EXPORT raCudaTargets)
  install(EXPORT raCudaTargets NAMESPACE ra:: DESTINATION "${RA_INSTALL_CMAKEDIR}")
  install(FILES "${PROJECT_SOURCE_DIR}/cmake/ra_cuda.cmake" "${PROJECT_SOURCE_DIR}/cmake/ra_lists.cmake"
          DESTINATION "${RA_INSTALL_CMAKEDIR}")
endif()

set(RA_PACKAGE_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/raConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/raConfig.cmake"
  INSTALL_DESTINATION "${RA_INSTALL_CMAKEDIR}"
  PATH_VARS RA_PACKAGE_INCLUDEDIR)
# Header-only, but not ARCH_INDEPENDENT: ra::cuda names a CUDA toolkit of this machine.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/raConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/raConfig.cmake" "${PROJECT_BINARY_DIR}/raConfigVersion.cmake"
        DESTINATION "${RA_INSTALL_CMAKEDIR}")

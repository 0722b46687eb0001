# tests/consumer/check_package.cmake — the CTest test `consumer_package`:
#   1. cmake --install <ra build> --prefix <work>/prefix
#   2. checks the installed package files (no source or build paths, no CUDA architectures)
#   3. configures, builds and runs tests/consumer against that prefix only; the CUDA consumer
#      (consumer_cuda, where the package has ra::cuda) is built here and run by its own CTest
#      test, consumer_cuda, which CTest reports as skipped where no GPU exists
# Run as: cmake -DRA_BUILD_DIR=... -DRA_CONSUMER_SOURCE_DIR=... -DRA_WORK_DIR=... -P this file
# (tests/CMakeLists.txt passes the rest: build type, generator, compilers, Eigen3_DIR).
cmake_minimum_required(VERSION 3.25)

foreach(_var RA_BUILD_DIR RA_CONSUMER_SOURCE_DIR RA_WORK_DIR)
  if(NOT ${_var})
    message(FATAL_ERROR "check_package.cmake: ${_var} is not set")
  endif()
endforeach()
if(NOT RA_BUILD_TYPE)
  set(RA_BUILD_TYPE Release)
endif()

set(_prefix "${RA_WORK_DIR}/prefix")
set(_build "${RA_WORK_DIR}/build")
file(REMOVE_RECURSE "${RA_WORK_DIR}")

# Runs a command; on failure prints its output and stops with an error naming the step.
function(run_step name)
  message(STATUS "consumer_package: ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  set(step_out "${_out}" PARENT_SCOPE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "consumer_package: ${name} failed (exit ${_rc}):\n${_out}")
  endif()
endfunction()

run_step("install into ${_prefix}" "${CMAKE_COMMAND}" --install "${RA_BUILD_DIR}"
         --prefix "${_prefix}" --config "${RA_BUILD_TYPE}")

# The installed package must be relocatable and must not pick the consumer's GPU architecture.
file(GLOB_RECURSE _pkg_files "${_prefix}/*.cmake")
if(NOT _pkg_files)
  message(FATAL_ERROR "consumer_package: no package files were installed under ${_prefix}")
endif()
get_filename_component(_source_dir "${RA_CONSUMER_SOURCE_DIR}/../.." ABSOLUTE)
foreach(_f IN LISTS _pkg_files)
  file(READ "${_f}" _text)
  foreach(_path IN ITEMS "${_source_dir}" "${RA_BUILD_DIR}")
    string(FIND "${_text}" "${_path}" _at)
    if(NOT _at EQUAL -1)
      message(FATAL_ERROR "consumer_package: ${_f} names ${_path}, expected install-relative paths")
    endif()
  endforeach()
  get_filename_component(_name "${_f}" NAME)
  if(_name MATCHES "Targets" AND _text MATCHES "CUDA_ARCHITECTURES|-gencode|-arch|sm_[0-9]")
    message(FATAL_ERROR "consumer_package: ${_f} sets a CUDA architecture (${CMAKE_MATCH_0}), "
                        "expected none: consumers choose their own")
  endif()
endforeach()

set(_configure "${CMAKE_COMMAND}" -S "${RA_CONSUMER_SOURCE_DIR}" -B "${_build}"
    "-DCMAKE_BUILD_TYPE=${RA_BUILD_TYPE}"
    "-DCMAKE_PREFIX_PATH=${_prefix}"
    "-DRA_EXPECTED_PREFIX=${_prefix}"
    "-DRA_EXPECT_CUDA=${RA_EXPECT_CUDA}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(RA_GENERATOR)
  list(APPEND _configure -G "${RA_GENERATOR}")
endif()
if(RA_CXX_COMPILER)
  list(APPEND _configure "-DCMAKE_CXX_COMPILER=${RA_CXX_COMPILER}")
endif()
if(RA_EIGEN3_DIR)
  list(APPEND _configure "-DEigen3_DIR=${RA_EIGEN3_DIR}")
endif()
if(RA_CUDA_COMPILER)
  list(APPEND _configure "-DCMAKE_CUDA_COMPILER=${RA_CUDA_COMPILER}")
  if(RA_CUDA_HOST_COMPILER)
    list(APPEND _configure "-DCMAKE_CUDA_HOST_COMPILER=${RA_CUDA_HOST_COMPILER}")
  endif()
else()
  list(APPEND _configure -DRA_CONSUMER_CUDA=OFF)
endif()
run_step("configure the consumer" ${_configure})
run_step("build the consumer" "${CMAKE_COMMAND}" --build "${_build}" --config "${RA_BUILD_TYPE}")

find_program(_consumer consumer PATHS "${_build}" "${_build}/${RA_BUILD_TYPE}" NO_DEFAULT_PATH)
if(NOT _consumer)
  message(FATAL_ERROR "consumer_package: the consumer executable was not built in ${_build}")
endif()
run_step("run the consumer" "${_consumer}")
message(STATUS "${step_out}")

find_program(_consumer_cuda consumer_cuda PATHS "${_build}" "${_build}/${RA_BUILD_TYPE}"
             NO_DEFAULT_PATH)
if(RA_EXPECT_CUDA AND NOT _consumer_cuda)
  message(FATAL_ERROR "consumer_package: the package has ra::cuda but consumer_cuda was not built")
endif()
if(_consumer_cuda)
  message(STATUS "consumer_package: built ${_consumer_cuda} (the CTest test consumer_cuda runs it)")
endif()
message(STATUS "consumer_package: passed")

# tests/subdirectory/check_subdirectory.cmake — the CTest test `consumer_subdirectory`:
# configures tests/subdirectory (a parent project that adds ra with add_subdirectory), builds
# it and runs its CPU program (the CUDA one is the test consumer_subdirectory_flash).
# Run as: cmake -DRA_SOURCE_DIR=... -DRA_WORK_DIR=... [-DRA_GENERATOR=...] [compilers] -P this
cmake_minimum_required(VERSION 3.25)
foreach(_var RA_SOURCE_DIR RA_WORK_DIR)
  if(NOT ${_var})
    message(FATAL_ERROR "check_subdirectory.cmake: ${_var} is not set")
  endif()
endforeach()
set(_build "${RA_WORK_DIR}/build")
file(REMOVE_RECURSE "${RA_WORK_DIR}")

function(run_step name)
  message(STATUS "consumer_subdirectory: ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  set(step_rc "${_rc}" PARENT_SCOPE)
  set(step_out "${_out}" PARENT_SCOPE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "consumer_subdirectory: ${name} failed (exit ${_rc}):\n${_out}")
  endif()
endfunction()

# The kernels of one (D, R) pair keep the build short; the parent sees ra's option values.
set(_configure "${CMAKE_COMMAND}" -S "${RA_SOURCE_DIR}/tests/subdirectory" -B "${_build}"
    -DCMAKE_BUILD_TYPE=Release "-DRA_SOURCE_DIR=${RA_SOURCE_DIR}" -DRA_CUDA_HEAD_DIMS=64
    -DRA_CUDA_RANKS=0)
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
else()
  list(APPEND _configure -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON -DRA_ENABLE_CUDA=OFF)
endif()
run_step("configure the parent project" ${_configure})
set(_targets parent)
if(RA_CUDA_COMPILER)
  list(APPEND _targets parent_flash)
endif()
cmake_host_system_information(RESULT _cores QUERY NUMBER_OF_LOGICAL_CORES)
run_step("build the parent project" "${CMAKE_COMMAND}" --build "${_build}" --parallel ${_cores}
         --target ${_targets})
foreach(_program IN LISTS _targets)
  find_program(_exe_${_program} ${_program} PATHS "${_build}" NO_DEFAULT_PATH)
  if(NOT _exe_${_program})
    message(FATAL_ERROR "consumer_subdirectory: ${_program} was not built in ${_build}")
  endif()
endforeach()
# The CPU program runs here; parent_flash runs as the test consumer_subdirectory_flash
# (skipped without a GPU).
run_step("run parent" "${_exe_parent}")
message(STATUS "${step_out}")
message(STATUS "consumer_subdirectory: passed")

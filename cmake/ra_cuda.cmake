# ra_cuda.cmake — CMake helpers for the CUDA backend, used in this tree and installed with the
# package (raConfig.cmake includes it when the CUDA targets were exported).
#
#   ra_cuda_cxx20(<target>)                 CUDA units linking <target> compile as C++20
#   ra_cuda_lists(<dims_var> <ranks_var>)   the head dims and ranks our CUDA code instantiates
#   ra_cuda_narrow(<target> <scope>)        compile <target> with those lists
#   ra_add_flash_instantiations(<target>)   the flash kernels: a dispatch unit per dtype and a
#                                           unit per (dtype, D, R) and direction
#   ra_flash_kernels(<name>)                a static library holding those instantiations
#   ra_flash_compile_check(<name>)          compile-only units: every supported (D, R) pair
#                                           once, where the CUDA lists are narrowed
#
# Supported values live in ONE list, in include/ra/core/dispatch.hpp; this file reads them from
# there rather than repeating them. RA_HEAD_DIMS / RA_RANKS narrow the whole package (they
# become compile definitions of ra::core); RA_CUDA_HEAD_DIMS / RA_CUDA_RANKS narrow only the
# CUDA targets passed to these functions, so a CI machine can compile few kernels while the
# CPU tests still cover every (D, R).
include_guard(GLOBAL)
include("${CMAKE_CURRENT_LIST_DIR}/ra_lists.cmake")

# Where dispatch.hpp is: the installed package's config sets RA_DISPATCH_HEADER before it
# includes this file; in a source tree it sits beside this folder. Kept as a global property,
# so the functions below find it from any directory: a parent project that adds ra with
# add_subdirectory() calls them from its own scope, where ra's variables are not visible.
if(NOT DEFINED RA_DISPATCH_HEADER)
  set(RA_DISPATCH_HEADER "${CMAKE_CURRENT_LIST_DIR}/../include/ra/core/dispatch.hpp")
endif()
set_property(GLOBAL PROPERTY RA_DISPATCH_HEADER "${RA_DISPATCH_HEADER}")

# The default list `#define <macro> a, b, c` of dispatch.hpp, as a CMake list.
function(_ra_dispatch_default macro out_var)
  get_property(_header GLOBAL PROPERTY RA_DISPATCH_HEADER)
  file(STRINGS "${_header}" _line REGEX "^#define ${macro} ")
  if(NOT _line)
    message(FATAL_ERROR "ra: no '#define ${macro}' in ${_header}")
  endif()
  string(REGEX REPLACE "^#define ${macro} +" "" _vals "${_line}")
  string(REGEX REPLACE " *, *" ";" _vals "${_vals}")
  string(STRIP "${_vals}" _vals)
  set(${out_var} "${_vals}" PARENT_SCOPE)
endfunction()

# The list ra::core is compiled with: the one the package was narrowed to (its RA_HEAD_DIMS /
# RA_RANKS property), else dispatch.hpp's default.
function(_ra_core_list macro out_var)
  _ra_dispatch_default(${macro} _vals)
  if(TARGET ra::core)
    get_target_property(_narrowed ra::core ${macro})
    if(_narrowed)
      set(_vals "${_narrowed}")
    endif()
  endif()
  set(${out_var} "${_vals}" PARENT_SCOPE)
endfunction()

# <narrow> if set, else <core>; <narrow> must be a subset of <core>.
function(_ra_pick what core narrow out_var)
  if(NOT narrow)
    set(${out_var} "${core}" PARENT_SCOPE)
    return()
  endif()
  foreach(_v IN LISTS narrow)
    if(NOT _v IN_LIST core)
      message(FATAL_ERROR "ra: ${what} contains ${_v}, expected a subset of the supported "
                          "values ${core}")
    endif()
  endforeach()
  set(${out_var} "${narrow}" PARENT_SCOPE)
endfunction()

## Makes the CUDA translation units of whatever links <target> compile as C++20 (the core
## headers use concepts). CMake learnt cuda_std_20 for nvcc only after 3.25, so where it is
## unknown nvcc gets -std=c++20 directly. Decided where the package is used: in this tree the
## requirement is BUILD_INTERFACE-only, and raConfig.cmake calls this again for ra::cuda.
function(ra_cuda_cxx20 target)
  get_target_property(_imported ${target} IMPORTED)
  get_target_property(_features ${target} INTERFACE_COMPILE_FEATURES)
  get_target_property(_options ${target} INTERFACE_COMPILE_OPTIONS)
  if("${_features};${_options}" MATCHES "cuda_std_20|-std=c\\+\\+20")
    return()  # already set (find_package(ra) ran twice)
  endif()
  if(CMAKE_CUDA_COMPILE_FEATURES AND "cuda_std_20" IN_LIST CMAKE_CUDA_COMPILE_FEATURES)
    set(_feature cuda_std_20)
    if(NOT _imported)
      set(_feature "$<BUILD_INTERFACE:cuda_std_20>")
    endif()
    target_compile_features(${target} INTERFACE "${_feature}")
  else()
    set(_flag "$<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>")
    if(NOT _imported)
      set(_flag "$<BUILD_INTERFACE:${_flag}>")
    endif()
    target_compile_options(${target} INTERFACE "${_flag}")
  endif()
endfunction()

## Sets <dims_var> and <ranks_var> to the head dims and ranks of our CUDA targets.
function(ra_cuda_lists dims_var ranks_var)
  _ra_core_list(RA_HEAD_DIMS _core_dims)
  _ra_core_list(RA_RANKS _core_ranks)
  _ra_pick(RA_CUDA_HEAD_DIMS "${_core_dims}" "${RA_CUDA_HEAD_DIMS}" _dims)
  _ra_pick(RA_CUDA_RANKS "${_core_ranks}" "${RA_CUDA_RANKS}" _ranks)
  set(${dims_var} "${_dims}" PARENT_SCOPE)
  set(${ranks_var} "${_ranks}" PARENT_SCOPE)
endfunction()

## Compiles <target> (all its translation units, CUDA and C++) with the CUDA lists, so that
## dispatch in it only reaches instantiated kernels. <scope>: PRIVATE, PUBLIC or INTERFACE.
function(ra_cuda_narrow target scope)
  _ra_core_list(RA_HEAD_DIMS _core_dims)
  _ra_core_list(RA_RANKS _core_ranks)
  ra_cuda_lists(_dims _ranks)
  # ra::core already defines the package-wide lists; a second definition is only needed when
  # the CUDA lists are narrower, and only correct when ra::core defines none (a macro must not
  # be defined twice).
  if(NOT _dims STREQUAL _core_dims)
    get_target_property(_narrowed ra::core RA_HEAD_DIMS)
    if(_narrowed)
      message(FATAL_ERROR "ra: RA_CUDA_HEAD_DIMS (${_dims}) and RA_HEAD_DIMS (${_core_dims}) "
                          "are both set; expected at most one of them")
    endif()
    ra_list_definitions(${target} ${scope} RA_HEAD_DIMS "${_dims}")
  endif()
  if(NOT _ranks STREQUAL _core_ranks)
    get_target_property(_narrowed ra::core RA_RANKS)
    if(_narrowed)
      message(FATAL_ERROR "ra: RA_CUDA_RANKS (${_ranks}) and RA_RANKS (${_core_ranks}) are "
                          "both set; expected at most one of them")
    endif()
    ra_list_definitions(${target} ${scope} RA_RANKS "${_ranks}")
  endif()
endfunction()

## Adds to <target> generated .cu files that explicitly instantiate the flash kernel family:
## per dtype, the dispatch ra::cuda::detail::flash_{forward,backward}_dispatch<T, D> and
## decode_dispatch<T, D>; per supported (dtype, D, R), the kernels
## flash_{forward,backward}_rank<T, D, R> and decode_rank<T, D, R> (every gate mode and
## restart flag); and defines RA_CUDA_EXTERN_FLASH so the target's other translation
## units see declarations only and instantiate nothing: the kernel family compiles once, in
## parallel.
## On a library the definitions are PUBLIC, so whatever links it dispatches consistently.
function(ra_add_flash_instantiations target)
  if(NOT TARGET ${target})
    message(FATAL_ERROR "ra_add_flash_instantiations: '${target}' is not a target")
  endif()
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    set(_scope PRIVATE)
  elseif(_type MATCHES "^(STATIC_LIBRARY|SHARED_LIBRARY|OBJECT_LIBRARY|MODULE_LIBRARY)$")
    set(_scope PUBLIC)
  else()
    message(FATAL_ERROR "ra_add_flash_instantiations: '${target}' is a ${_type}, expected an "
                        "executable or a static, shared or object library")
  endif()
  ra_cuda_lists(_dims _ranks)
  string(REPLACE ";" ", " _dim_text "${_dims}")
  set(_type_fp32 "float")
  set(_type_fp16 "ra::fp16")
  set(_type_bf16 "ra::bf16")
  set(_dir "${CMAKE_CURRENT_BINARY_DIR}/ra_flash/${target}")
  set(_sources "")
  foreach(_dtype IN ITEMS fp32 fp16 bf16)
    # The runtime R -> rank launcher maps of this dtype: cheap, no kernel in them.
    set(_dispatch "")
    foreach(_d IN LISTS _dims)
      string(APPEND _dispatch
"template void ra::cuda::detail::flash_forward_dispatch<${_type_${_dtype}}, ${_d}>(
    const ra::cuda::AttentionParams&, cudaStream_t);
template void ra::cuda::detail::flash_backward_dispatch<${_type_${_dtype}}, ${_d}>(
    const ra::cuda::AttentionBackwardParams&, cudaStream_t);
template void ra::cuda::detail::decode_dispatch<${_type_${_dtype}}, ${_d}>(
    const ra::cuda::AttentionParams&, cudaStream_t);
")
    endforeach()
    set(_file "${_dir}/flash_dispatch_${_dtype}.cu")
    # file(CONFIGURE) rewrites only on change, so reconfiguring does not recompile kernels.
    file(CONFIGURE OUTPUT "${_file}" CONTENT
"// Generated by ra_add_flash_instantiations (cmake/ra_cuda.cmake): the ${_dtype} dispatch of
// the flash kernel family over head dims {${_dim_text}}; the kernels live in the rank units.
#include <ra/cuda/flash_backward_dispatch.cuh>
#include <ra/cuda/flash_dispatch.cuh>

${_dispatch}")
    list(APPEND _sources "${_file}")
    # One unit per (D, R) and direction: all gate modes and restart flags of that rank.
    foreach(_d IN LISTS _dims)
      foreach(_r IN LISTS _ranks)
        if(NOT _r LESS _d)
          continue()
        endif()
        foreach(_dir_name IN ITEMS forward backward decode)
          if(_dir_name STREQUAL "forward")
            set(_header "ra/cuda/flash_rank.cuh")
            set(_fn "flash_forward_rank")
            set(_params "AttentionParams")
          elseif(_dir_name STREQUAL "decode")
            set(_header "ra/cuda/decode_rank.cuh")
            set(_fn "decode_rank")
            set(_params "AttentionParams")
          else()
            set(_header "ra/cuda/flash_backward_rank.cuh")
            set(_fn "flash_backward_rank")
            set(_params "AttentionBackwardParams")
          endif()
          set(_file "${_dir}/flash_${_dir_name}_${_dtype}_d${_d}_r${_r}.cu")
          file(CONFIGURE OUTPUT "${_file}" CONTENT
"// Generated by ra_add_flash_instantiations (cmake/ra_cuda.cmake): the ${_dir_name} kernels
// of dtype ${_dtype}, D = ${_d}, R = ${_r} (every gate mode, with and without self-restart).
#include <${_header}>

template void ra::cuda::detail::${_fn}<${_type_${_dtype}}, ${_d}, ${_r}>(
    const ra::cuda::${_params}&, cudaStream_t);
")
          list(APPEND _sources "${_file}")
        endforeach()
      endforeach()
    endforeach()
  endforeach()
  target_sources(${target} PRIVATE ${_sources})
  target_link_libraries(${target} ${_scope} ra::cuda)
  target_compile_definitions(${target} ${_scope} RA_CUDA_EXTERN_FLASH)
  ra_cuda_narrow(${target} ${_scope})
endfunction()

## A static library <name> with the flash instantiations, linked by every CUDA target of a
## project so the kernels compile once (a second call with the same name does nothing).
function(ra_flash_kernels name)
  if(TARGET ${name})
    return()
  endif()
  add_library(${name} STATIC)
  ra_add_flash_instantiations(${name})
endfunction()

## An object library <name> (compiled, never linked or run) with one generated unit per
## supported (D, R) pair of the package's lists (dispatch.hpp's, or RA_HEAD_DIMS / RA_RANKS),
## NOT narrowed by RA_CUDA_HEAD_DIMS / RA_CUDA_RANKS: a build that narrows the kernels it links
## (CI) still compiles every (D, R) instantiation once, so a template error in any of them fails
## the build. Each unit explicitly instantiates the forward kernel flash_forward<T, D, R, G,
## restart> and the backward flash_backward<T, D, R, gated> (and, for fp16/bf16 at D = 64 and
## 128, sm90::flash_backward) for ONE dtype and ONE gate mode and restart flag (the backward is gated unless G is none); these rotate over the pairs so that
## every D and every R meets every dtype, and every (dtype, gate mode) and (gate mode, restart)
## combination occurs. The units compile in parallel. Where the CUDA lists are not narrowed,
## ra_flash_kernels already compiles every pair, and no target is made (<name> stays undefined).
function(ra_flash_compile_check name)
  if(TARGET ${name})
    return()
  endif()
  _ra_core_list(RA_HEAD_DIMS _dims)
  _ra_core_list(RA_RANKS _ranks)
  ra_cuda_lists(_cuda_dims _cuda_ranks)
  if(_cuda_dims STREQUAL _dims AND _cuda_ranks STREQUAL _ranks)
    return()
  endif()
  set(_dtypes float ra::fp16 ra::bf16)
  set(_dtype_names fp32 fp16 bf16)
  set(_modes none per_layer per_head)
  set(_dir "${CMAKE_CURRENT_BINARY_DIR}/ra_flash_compile_check/${name}")
  set(_sources "")
  set(_di 0)
  foreach(_d IN LISTS _dims)
    set(_ri 0)
    foreach(_r IN LISTS _ranks)
      if(NOT _r LESS _d)
        math(EXPR _ri "${_ri} + 1")
        continue()
      endif()
      # (di + ri) mod 3 and (2 di + ri) mod 3 are a bijection of Z3 x Z3: all nine (dtype, gate
      # mode) combinations occur; (di + ri) mod 2 pairs restart with each dtype and gate mode.
      math(EXPR _t "(${_di} + ${_ri}) % 3")
      math(EXPR _g "(2 * ${_di} + ${_ri}) % 3")
      math(EXPR _restart "(${_di} + ${_ri}) % 2")
      list(GET _dtypes ${_t} _type)
      list(GET _dtype_names ${_t} _type_name)
      list(GET _modes ${_g} _mode)
      if(_restart)
        set(_restart true)
      else()
        set(_restart false)
      endif()
      if(_mode STREQUAL "none")
        set(_gated false)
      else()
        set(_gated true)
      endif()
      # The sm_90a backward takes 16-bit types at D = 64 and 128 (ra/cuda/sm90/support.cuh).
      set(_sm90_backward "")
      if(NOT _type_name STREQUAL "fp32" AND (_d EQUAL 64 OR _d EQUAL 128))
        set(_sm90_backward
"template void ra::cuda::sm90::flash_backward<${_type}, ${_d}, ${_r}, ${_gated}>(
    const ra::cuda::AttentionBackwardParams&, cudaStream_t);
")
      endif()
      set(_file "${_dir}/flash_check_d${_d}_r${_r}.cu")
      file(CONFIGURE OUTPUT "${_file}" CONTENT
"// Generated by ra_flash_compile_check (cmake/ra_cuda.cmake): compiles the kernels of
// D = ${_d}, R = ${_r} (${_type_name}, gates ${_mode}, restart ${_restart}); never linked or run.
#include <ra/cuda/decode.cuh>
#include <ra/cuda/flash_backward.cuh>
#include <ra/cuda/flash_forward.cuh>
#include <ra/cuda/sm80/flash_backward.cuh>
#include <ra/cuda/sm90/flash_backward.cuh>

template void ra::cuda::flash_forward<${_type}, ${_d}, ${_r}, ra::GateMode::${_mode}, ${_restart}>(
    const ra::cuda::AttentionParams&, cudaStream_t);
template void ra::cuda::decode_forward<${_type}, ${_d}, ${_r}, ra::GateMode::${_mode}, ${_restart}>(
    const ra::cuda::AttentionParams&, cudaStream_t);
template void ra::cuda::flash_backward<${_type}, ${_d}, ${_r}, ${_gated}>(
    const ra::cuda::AttentionBackwardParams&, cudaStream_t);
${_sm90_backward}")
      list(APPEND _sources "${_file}")
      math(EXPR _ri "${_ri} + 1")
    endforeach()
    math(EXPR _di "${_di} + 1")
  endforeach()
  add_library(${name} OBJECT ${_sources})
  target_link_libraries(${name} PRIVATE ra::cuda)
  # Declarations only for the dispatch and rank templates: each unit compiles its own pair.
  target_compile_definitions(${name} PRIVATE RA_CUDA_EXTERN_FLASH)
endfunction()

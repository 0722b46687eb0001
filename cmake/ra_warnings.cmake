# ra_warnings.cmake — warning flags for this project's own targets (tests, examples, benches).
# Never applied to the exported targets: consumers choose their own flags.
include_guard(GLOBAL)

option(RA_WARNINGS_AS_ERRORS "Treat warnings in ra's own tests and examples as errors" OFF)

## Adds the project's warning flags to <target> (C++ sources, and the host side of CUDA ones).
function(ra_target_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set(_flags -Wall -Wextra)
    if(RA_WARNINGS_AS_ERRORS)
      list(APPEND _flags -Werror)
    endif()
    target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${_flags}>")
    list(JOIN _flags "," _host_flags)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${_host_flags}>)
  endif()
endfunction()

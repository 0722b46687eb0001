# ra_lists.cmake — hands a list of supported values (RA_HEAD_DIMS, RA_RANKS) to the compilers.
#
# include/ra/core/dispatch.hpp reads each list as a macro of comma-separated values. nvcc
# splits -D values at commas, so CUDA sources get the commas escaped (\,) and C++ sources
# plain ones.
include_guard(GLOBAL)

## Defines <macro> as the comma-separated <values> (a CMake list) for every C++ and CUDA source
## of <target> (or of what links it, for INTERFACE/PUBLIC <scope>).
function(ra_list_definitions target scope macro values)
  string(REPLACE ";" "$<COMMA>" _cxx "${values}")
  string(REPLACE ";" "\\$<COMMA>" _cuda "${values}")
  target_compile_definitions(${target} ${scope}
    "$<$<COMPILE_LANGUAGE:CUDA>:${macro}=${_cuda}>"
    "$<$<NOT:$<COMPILE_LANGUAGE:CUDA>>:${macro}=${_cxx}>")
endfunction()

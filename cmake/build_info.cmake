# Writes OUT (a header with the version and the source commit) only when its
# content changes, so an unchanged commit rebuilds nothing. GDN_SOURCE_COMMIT
# in the environment names the commit where the source tree has no usable git
# metadata (a copy of a working tree on another machine).
if(NOT "$ENV{GDN_SOURCE_COMMIT}" STREQUAL "")
  set(commit "$ENV{GDN_SOURCE_COMMIT}")
else()
  execute_process(COMMAND git -C ${SRC} rev-parse --short=12 HEAD
    OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR commit STREQUAL "")
    set(commit "unknown")
  else()
    execute_process(COMMAND git -C ${SRC} status --porcelain --untracked-files=no
      OUTPUT_VARIABLE dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(NOT dirty STREQUAL "")
      set(commit "${commit}-dirty")
    endif()
  endif()
endif()
set(content "#pragma once\n#define GDN_VERSION_STRING \"${VERSION}\"\n#define GDN_GIT_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${content}")
  file(WRITE ${OUT} "${content}")
endif()

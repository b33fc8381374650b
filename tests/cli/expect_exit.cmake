# expect_exit(RC_RULE EXPECT COMMAND...): runs COMMAND and fails the test
# unless its exit code matches RC_RULE ("nonzero" or a number) and its
# output contains EXPECT.
function(expect_exit rc_rule expect)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc_rule STREQUAL "nonzero")
    if(rc EQUAL 0)
      message(FATAL_ERROR "expected a non-zero exit, got 0\n${out}${err}")
    endif()
  elseif(NOT rc EQUAL rc_rule)
    message(FATAL_ERROR "expected exit ${rc_rule}, got ${rc}\n${out}${err}")
  endif()
  string(FIND "${out}${err}" "${expect}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "expected the message to contain '${expect}', got:\n${out}${err}")
  endif()
  message(STATUS "exit ${rc}: ${err}")
endfunction()

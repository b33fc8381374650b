# Makes a broken copy of the safetensors file GOOD (from `gdn run --dump-inputs`)
# at OUT, runs BIN run --inputs OUT, and passes when it exits 2 and prints EXPECT.
#   CASE garbage:   a text file, not safetensors
#   CASE truncated: GOOD without its last 1000 bytes
#   CASE bad_json:  the header's opening brace replaced
#   CASE no_q:      tensor q renamed to x
#   CASE q_is_g:    the names of q and g swapped (q becomes [T, HV] fp32)
# CMake strings cannot hold NUL bytes, so binary pieces are cut with
# file(DOWNLOAD file://... RANGE_*) and joined with `cmake -E cat`.

function(cut_range from first last to)
  file(DOWNLOAD "file://${from}" "${to}" RANGE_START ${first} RANGE_END ${last} STATUS status)
  list(GET status 0 code)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "cannot cut bytes ${first}..${last} of ${from}: ${status}")
  endif()
endfunction()

# Rewrites GOOD's JSON header with `replace_args` (pairs: match, replacement
# of the same length) into OUT.
function(edit_header)
  file(READ "${GOOD}" len_hex LIMIT 8 HEX)
  set(len 0)
  foreach(i RANGE 7 0 -1)
    math(EXPR pos "${i} * 2")
    string(SUBSTRING "${len_hex}" ${pos} 2 byte)
    math(EXPR len "${len} * 256 + 0x${byte}")
  endforeach()
  file(READ "${GOOD}" header OFFSET 8 LIMIT ${len})
  string(SUBSTRING "${header}" 0 ${len} header)  # file(READ) may append a newline
  set(edited "${header}")
  set(pairs ${ARGN})
  list(LENGTH pairs n)
  math(EXPR last_pair "${n} - 1")
  foreach(i RANGE 0 ${last_pair} 2)
    math(EXPR j "${i} + 1")
    list(GET pairs ${i} match)
    list(GET pairs ${j} replacement)
    string(REPLACE "${match}" "${replacement}" edited "${edited}")
  endforeach()
  string(LENGTH "${edited}" edited_len)
  if(NOT edited_len EQUAL len)
    message(FATAL_ERROR "the edited header changed length (${len} -> ${edited_len})")
  endif()
  file(SIZE "${GOOD}" size)
  math(EXPR data_first "8 + ${len}")
  math(EXPR data_last "${size} - 1")
  cut_range("${GOOD}" 0 7 "${OUT}.len")
  file(WRITE "${OUT}.header" "${edited}")
  cut_range("${GOOD}" ${data_first} ${data_last} "${OUT}.data")
  execute_process(COMMAND ${CMAKE_COMMAND} -E cat "${OUT}.len" "${OUT}.header" "${OUT}.data"
    OUTPUT_FILE "${OUT}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cannot join the pieces of ${OUT}")
  endif()
  file(REMOVE "${OUT}.len" "${OUT}.header" "${OUT}.data")
endfunction()

if(CASE STREQUAL "garbage")
  file(WRITE "${OUT}" "this is not a safetensors file\n")
elseif(CASE STREQUAL "truncated")
  file(SIZE "${GOOD}" size)
  math(EXPR last "${size} - 1001")
  cut_range("${GOOD}" 0 ${last} "${OUT}")
elseif(CASE STREQUAL "bad_json")
  edit_header("{\"" "!\"")
elseif(CASE STREQUAL "no_q")
  edit_header("\"q\":" "\"x\":")
elseif(CASE STREQUAL "q_is_g")
  edit_header("\"q\":" "\"X\":" "\"g\":" "\"q\":" "\"X\":" "\"g\":")
else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)
expect_exit(2 "${EXPECT}" ${BIN} run --inputs "${OUT}")

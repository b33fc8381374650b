# Run with -DGDN=<gdn binary> -DSUITE=<bench/suite.json> -DDIR=<scratch dir>:
# without --baseline, gdn bench takes the baselines/fla-*.json beside the
# suite whose device is this one, skipping files of other devices, and
# fills speedup_vs_baseline from it.
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}/baselines")
configure_file("${SUITE}" "${DIR}/suite.json" COPYONLY)
set(row "q3n-tp1 4x7")
# Runs gdn bench on the row into ${DIR}/<name>.json and reads it into <name>.
function(bench name)
  execute_process(COMMAND "${GDN}" bench --suite "${DIR}/suite.json" --rows "${row}" --reps 1
                          --json "${DIR}/${name}.json" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gdn bench failed: ${rc}")
  endif()
  file(READ "${DIR}/${name}.json" json)
  set(${name} "${json}" PARENT_SCOPE)
endfunction()
# This machine's device name, as gdn bench writes it.
bench(probe)
string(JSON device GET "${probe}" device)
string(JSON none GET "${probe}" baseline)
if(NOT none STREQUAL "")
  message(FATAL_ERROR "no baseline file yet, but the JSON names '${none}'")
endif()
file(WRITE "${DIR}/baselines/fla-a-other.json"
     "{\"device\": \"another device\", \"rows\": {\"${row}\": {\"graph_ms\": 900.0}}}")
file(WRITE "${DIR}/baselines/fla-b-here.json" "{\"device\": \"${device}\", \"rows\": {\"${row}\": {\"graph_ms\": 1000.0}}}")
bench(out)
string(JSON used GET "${out}" baseline)
string(JSON ms GET "${out}" rows 0 ms)
string(JSON speedup GET "${out}" rows 0 speedup_vs_baseline)
if(NOT used MATCHES "fla-b-here.json$")
  message(FATAL_ERROR "expected the baseline of this device, got '${used}'")
endif()
# speedup = 1000 ms / the row's few milliseconds: far above 1 (CMake compares
# the numbers as floats).
if(speedup LESS_EQUAL 50)
  message(FATAL_ERROR "speedup_vs_baseline ${speedup} does not come from the 1000 ms baseline (row took ${ms} ms)")
endif()
message(STATUS "baseline ${used}, speedup ${speedup} (row ${ms} ms)")

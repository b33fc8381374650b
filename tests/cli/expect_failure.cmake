# Runs BIN run FLAGS...; passes when it exits non-zero and prints EXPECT.
include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)
separate_arguments(args UNIX_COMMAND "${FLAGS}")
expect_exit(nonzero "${EXPECT}" ${BIN} run ${args})

# Applied to every test of tests/CMakeLists.txt once that file is done
# (cmake_language DEFER), so tests can be added anywhere in it.
# Skips (tests/lib.sh's skip, check.h's test_skip) exit 77: ctest shows
# "Skipped"; each is also logged to LMS_SKIP_LOG, emptied before a ctest run
# and printed after it with what to install (tests/skip_summary.sh, run by
# CTestCustom.cmake). In CI (CI=true) a skip is a failure (docs/ci.md).
function(lms_skip_settings)
  set(log ${CMAKE_BINARY_DIR}/Testing/skipped.txt)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t IN LISTS tests)
    set_property(TEST ${t} PROPERTY SKIP_RETURN_CODE 77)
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "LMS_SKIP_LOG=${log}" "LMS_TEST_NAME=${t}")
  endforeach()
  file(WRITE ${CMAKE_BINARY_DIR}/CTestCustom.cmake
       "set(CTEST_CUSTOM_PRE_TEST \"bash ${CMAKE_SOURCE_DIR}/tests/skip_summary.sh --reset ${log}\")\n"
       "set(CTEST_CUSTOM_POST_TEST \"bash ${CMAKE_SOURCE_DIR}/tests/skip_summary.sh ${log}\")\n")
endfunction()
cmake_language(DEFER CALL lms_skip_settings)

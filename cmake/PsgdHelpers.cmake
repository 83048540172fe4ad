# Per-target settings shared by every psgd target (no global flags, STYLE.md §8).
function(psgd_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  # Designated initialisers that leave members at their defaults are the point (STYLE.md §3).
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-missing-field-initializers)
  # At -O2, g++ 12 vectorises only loops that need no scalar epilogue ("very cheap" cost model), so
  # the element loops of the codecs, the optimiser and the reductions stayed scalar. The dynamic
  # cost model vectorises them; without -ffast-math float results stay bit-identical (no
  # reassociation).
  target_compile_options(${target} PRIVATE $<$<NOT:$<CONFIG:Debug>>:-fvect-cost-model=dynamic>)
  if(PSGD_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()

# psgd_add_library(name SOURCES ... LIBS ...): one library per top-level folder.
function(psgd_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;PRIVATE_LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_LIBS} PRIVATE ${ARG_PRIVATE_LIBS})
  psgd_target_defaults(${name})
endfunction()

# psgd_add_test(name SOURCES ... LIBS ... [LABELS ...] [TIMEOUT s]): a GoogleTest binary under ctest.
function(psgd_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  psgd_target_defaults(${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

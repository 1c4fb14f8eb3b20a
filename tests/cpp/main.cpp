// Catch2 runner for every C++ test file in tests/cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

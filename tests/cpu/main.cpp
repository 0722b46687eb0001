// tests/cpu/main.cpp — the Catch2 runner of the CPU tests (the test cases live in test_*.cpp).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

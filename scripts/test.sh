#!/usr/bin/env bash
# Installs what is missing, builds everything (library, examples, tests, benchmarks) and runs
# every test with ctest; exits non-zero when any test fails.
#
#   scripts/test.sh [extra cmake options, e.g. -DMINIMAX_CUDA=OFF]
#
# The build directory is build/ (MMX_BUILD_DIR overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MMX_BUILD_DIR:-build}
jobs=$(nproc)

scripts/deps.sh
# All tests means the Rust, Go and C# bindings too: install their toolchains and make a
# missing one a failure rather than a skip.
scripts/deps-bindings.sh
export MMX_REQUIRE_BINDINGS=${MMX_REQUIRE_BINDINGS:-1}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs"

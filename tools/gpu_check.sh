#!/usr/bin/env bash
# GPU check in one call: configure with CUDA on, build everything, run the CUDA tests, run them
# again under compute-sanitizer (memcheck, racecheck), run the CUDA benchmarks, and print a
# summary table last.
#
#   tools/gpu_check.sh [PHASE ...]      phases: build test bench sanitize (default: all four,
#                                        in that order; the sanitizer runs, the slowest, last),
#                                        and profile (only when named)
#
# Environment:
#   OUT              where logs and JSON go (default: $BUILD/gpu_check); at most a handful of
#                    files: summary.txt, build.log, tests.log, sanitize.log, bench.log, *.json
#   BUILD            build directory (default: build-gpu)
#   JOBS             build parallelism (default: 16)
#   SANITIZE_TIMEOUT seconds per sanitizer run (default: 150)
#   TIME_BUDGET      seconds after which remaining sanitizer runs are skipped, so the summary
#                    still prints inside a 10-minute call (default: 540)
#   RACECHECK_FILTER gtest filter for the racecheck runs (default: the golden-fixture, demo-model,
#                    decode-graph, 100k-token and long-cache cases, which memcheck covers and
#                    whose kernels the other cases run too, are left out: with them racecheck of
#                    the model test ran past 150 s on an H100)
#   BENCH_ARGS       extra arguments for bench_cuda (e.g. --quick)
#   EXTRA_TESTS      more test programs to run in the test phase (e.g. the C API tests, with
#                    MMX_TEST_BACKEND=cuda so that they select the CUDA backend)
#   TARGETS          build only these targets (space-separated; default: everything)
#   PROFILE          what the profile phase runs under Nsight Compute, which prints every
#                    kernel's time summed by kernel: bench_cuda sections as SECTION:SKIP:COUNT
#                    (kernel launches to skip first, then to profile, counted from the start
#                    of the section; default "steps:150:400", about two batch-1 decode steps
#                    after the warm-up prefill)
#   MMX_DEPS_DIR     a folder of .deb files unpacked into a private root (never into /) before
#                    configuring when a build dependency is missing (default: .deps). On a machine without network,
#                    fill it beforehand on one with: cd .deps && apt-get download
#                    libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev
#                    libgfortran5 nlohmann-json3-dev libsentencepiece-dev libsentencepiece0
#                    libpcre2-dev libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libgtest-dev googletest
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-16}
OUT=${OUT:-$BUILD/gpu_check}
SANITIZE_TIMEOUT=${SANITIZE_TIMEOUT:-150}
TIME_BUDGET=${TIME_BUDGET:-540}
started=$(date +%s)
RACECHECK_FILTER=${RACECHECK_FILTER:--Golden/Fixture.*:*100k*:*LongCache*:*DemoModel*:*DecodeGraphs*}
DEPS_DIR=${MMX_DEPS_DIR:-.deps}
mkdir -p "$OUT"
phases=("$@")
((${#phases[@]})) || phases=(build test bench sanitize)
want() { [[ " ${phases[*]} " == *" $1 "* ]]; }

summary=()  # "name|status|seconds|detail"
record() { summary+=("$1|$2|$3|$4"); }
now() { date +%s; }

# The CUDA test programs are those built from tests/cuda/test_*.cpp.
cuda_tests=()
for src in tests/cuda/test_*.cpp; do cuda_tests+=("$(basename "$src" .cpp)"); done

ensure_deps() {
  local missing=()
  pkg-config --exists openblas || missing+=(openblas)
  pkg-config --exists sentencepiece || missing+=(sentencepiece)
  pkg-config --exists libpcre2-8 || missing+=(pcre2)
  [[ -f /usr/include/nlohmann/json.hpp || -f /usr/local/include/nlohmann/json.hpp ]] || missing+=(nlohmann-json)
  [[ -d /usr/src/googletest || -f /usr/lib/x86_64-linux-gnu/libgtest.a || -f /usr/local/lib/libgtest.a ]] ||
    missing+=(gtest)
  ((${#missing[@]})) || return 0
  echo "gpu_check: missing build dependencies: ${missing[*]}"
  if ! compgen -G "$DEPS_DIR/*.deb" >/dev/null; then
    echo "gpu_check: no $DEPS_DIR/*.deb to install them from (see the header of this script)"
    return 1
  fi
  # Unpack into a private root, never into /: the packages could replace the machine's own
  # libraries. Point the compiler, pkg-config, CMake and the loader at it.
  local root
  root=$(cd "$DEPS_DIR" && pwd)/root
  echo "gpu_check: unpacking $DEPS_DIR/*.deb into $root"
  mkdir -p "$root"
  for f in "$DEPS_DIR"/*.deb; do dpkg -x "$f" "$root" || return 1; done
  local multi=$root/usr/lib/x86_64-linux-gnu
  export PKG_CONFIG_SYSROOT_DIR=$root
  export PKG_CONFIG_PATH=$multi/pkgconfig:$multi/openblas-pthread/pkgconfig:$root/usr/share/pkgconfig
  export CMAKE_PREFIX_PATH=$root/usr:$multi/cmake
  export CPATH=$root/usr/include${CPATH:+:$CPATH}
  export LIBRARY_PATH=$multi:$multi/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}
  export LD_LIBRARY_PATH=$multi:$multi/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  return 0
}

# Dependencies are looked up (and unpacked if missing) for every phase: the test and bench
# phases need the runtime libraries too.
deps_ok() { true; }
ensure_deps >"$OUT/build.log" 2>&1 || deps_ok() { false; }

if want build; then
  t0=$(now)
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  if deps_ok &&
     cmake -S . -B "$BUILD" "${generator[@]}" -DMINIMAX_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
       >>"$OUT/build.log" 2>&1 &&
     cmake --build "$BUILD" -j "$JOBS" ${TARGETS:+--target $TARGETS} >>"$OUT/build.log" 2>&1; then
    record build ok $(($(now) - t0)) "$BUILD"
  else
    record build FAILED $(($(now) - t0)) "see build.log"
    tail -40 "$OUT/build.log"
  fi
fi

find_test() {  # the executable of a test program, wherever the generator put it
  find "$BUILD/tests" -maxdepth 2 -type f -name "$1" -perm -u+x 2>/dev/null | head -1
}

# Last gtest summary line of a log section, e.g. "[  PASSED  ] 12 tests."
gtest_result() { grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?' "$1" | sed -E 's/\[ +([A-Z]+) +\] ([0-9]+) tests?.*/\1 \2/' | tr '\n' ' '; }

if want test; then
  : >"$OUT/tests.log"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$OUT/tests.log" 2>&1
  for t in "${cuda_tests[@]}" test_quantize ${EXTRA_TESTS:-}; do
    exe=$(find_test "$t")
    if [[ -z $exe ]]; then record "$t" MISSING 0 "not built"; continue; fi
    t0=$(now)
    echo "===== $t" >>"$OUT/tests.log"
    "$exe" >"$OUT/.one.log" 2>&1
    rc=$?
    cat "$OUT/.one.log" >>"$OUT/tests.log"
    detail=$(gtest_result "$OUT/.one.log")
    if ((rc == 0)); then record "$t" ok $(($(now) - t0)) "$detail"
    else record "$t" FAILED $(($(now) - t0)) "rc=$rc $detail"
         grep -E '^\[  FAILED  \]|Failure|error' "$OUT/.one.log" | head -20; fi
  done
fi

if want bench; then
  : >"$OUT/bench.log"
  for b in bench_cuda bench_attention; do
    exe=$(find "$BUILD/bench" -maxdepth 1 -type f -name "$b" -perm -u+x 2>/dev/null | head -1)
    [[ -n $exe ]] || { record "$b" MISSING 0 "not built"; continue; }
    t0=$(now)
    args=(--json "$OUT/$b.json")
    # shellcheck disable=SC2206
    [[ $b == bench_cuda ]] && args+=(${BENCH_ARGS:-})
    echo "===== $b ${args[*]}" >>"$OUT/bench.log"
    "$exe" "${args[@]}" >"$OUT/.one.log" 2>&1
    rc=$?
    cat "$OUT/.one.log" >>"$OUT/bench.log"
    if ((rc == 0)); then record "$b" ok $(($(now) - t0)) "$b.json"
    else record "$b" FAILED $(($(now) - t0)) "rc=$rc"; tail -5 "$OUT/.one.log"; fi
  done
  # The benchmark tables themselves, before the summary.
  grep -vE '^=====' "$OUT/bench.log" | tail -80
fi

if want sanitize; then
  : >"$OUT/sanitize.log"
  if ! command -v compute-sanitizer >/dev/null; then
    record compute-sanitizer MISSING 0 "not on PATH"
  else
    for tool in memcheck racecheck; do
      for t in "${cuda_tests[@]}"; do
        exe=$(find_test "$t")
        [[ -n $exe ]] || continue
        if (($(now) - started > TIME_BUDGET)); then
          record "$tool $t" SKIPPED 0 "time budget (${TIME_BUDGET}s) spent"
          continue
        fi
        t0=$(now)
        echo "===== $tool $t" >>"$OUT/sanitize.log"
        extra=() args=()
        [[ $tool == memcheck ]] && extra=(--leak-check full)
        # NCCL probes its own kernels with cudaFuncGetAttributes while it initialises and handles
        # the "no kernel image" answers itself; memcheck reports each as an API error. For the
        # test that initialises NCCL, memory errors only.
        [[ $tool == memcheck && $t == test_cuda_sharding ]] && extra+=(--report-api-errors no)
        [[ $tool == racecheck && -n $RACECHECK_FILTER ]] && args=(--gtest_filter="$RACECHECK_FILTER")
        timeout "$SANITIZE_TIMEOUT" compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 99 \
          "$exe" "${args[@]}" >"$OUT/.one.log" 2>&1
        rc=$?
        cat "$OUT/.one.log" >>"$OUT/sanitize.log"
        errors=$(grep -E '=========.*(ERROR SUMMARY|RACECHECK SUMMARY)' "$OUT/.one.log" | tail -1 | sed 's/=========//')
        case $rc in
          0) record "$tool $t" ok $(($(now) - t0)) "$errors" ;;
          124) record "$tool $t" TIMEOUT $(($(now) - t0)) "over ${SANITIZE_TIMEOUT}s" ;;
          *) record "$tool $t" FAILED $(($(now) - t0)) "rc=$rc $errors"
             grep -E '^========= (Invalid|Error|Race|Warning|Leaked)' "$OUT/.one.log" | sort | uniq -c | head -10 ;;
        esac
      done
    done
  fi
fi

if want profile; then
  : >"$OUT/profile.log"
  exe=$(find "$BUILD/bench" -maxdepth 1 -type f -name bench_cuda -perm -u+x 2>/dev/null | head -1)
  if [[ -z $exe ]] || ! command -v ncu >/dev/null; then
    record profile MISSING 0 "bench_cuda not built or ncu not on PATH"
  else
    for spec in ${PROFILE:-steps:150:400}; do
      IFS=: read -r section skip count <<<"$spec"
      t0=$(now)
      echo "===== ncu bench_cuda --only $section" >>"$OUT/profile.log"
      ncu --profile-from-start off --metrics gpu__time_duration.sum --print-summary per-kernel \
        --launch-skip "${skip:-0}" --launch-count "${count:-400}" \
        "$exe" --only "$section" --quick >>"$OUT/profile.log" 2>&1
      rc=$?
      if ((rc == 0)); then record "profile $section" ok $(($(now) - t0)) "profile.log"
      else record "profile $section" FAILED $(($(now) - t0)) "rc=$rc"; tail -5 "$OUT/profile.log"; fi
    done
  fi
fi

rm -f "$OUT/.one.log"

fail=0
for row in "${summary[@]}"; do [[ ${row#*|} == ok\|* || ${row#*|} == SKIPPED\|* ]] || fail=1; done
{
  printf '\n%-34s %-8s %6s  %s\n' "check" "status" "sec" "detail"
  printf '%.0s-' {1..100}
  printf '\n'
  for row in "${summary[@]}"; do
    IFS='|' read -r name status secs detail <<<"$row"
    printf '%-34s %-8s %6s  %s\n' "$name" "$status" "$secs" "${detail:0:60}"
  done
  printf 'logs: %s   overall: %s\n' "$OUT" "$( ((fail)) && echo FAILED || echo ok)"
} | tee "$OUT/summary.txt"
exit $fail

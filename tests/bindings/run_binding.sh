#!/usr/bin/env bash
# Builds one binding and runs its own test suite against the library just built.
#
#   run_binding.sh rust|go|csharp LIB_DIR SOURCE_DIR WORK_DIR MODEL_DIR
#
# LIB_DIR holds libminimax.so; WORK_DIR (in the build tree) receives the binding's build
# output and a minimax.pc describing the build tree. Exits 77 (skipped) when the language's
# toolchain is missing, unless MMX_REQUIRE_BINDINGS=1 (CI), where that is a failure.
set -euo pipefail
lang=$1 lib=$2 src=$3 work=$4 model=$5

need() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "binding test $lang: $tool not found (scripts/deps-bindings.sh installs it)"
      [[ ${MMX_REQUIRE_BINDINGS:-0} == 1 ]] && exit 1
      exit 77
    fi
  done
}

export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export MINIMAX_TEST_MODEL=$model MINIMAX_INCLUDE_DIR=$src/include
mkdir -p "$work"

case $lang in
rust)
  need cargo rustc cc
  # The crate's build.rs takes the build tree from these instead of pkg-config.
  export MINIMAX_LIB_DIR=$lib CARGO_TARGET_DIR=$work/rust-target
  cargo test --offline --manifest-path "$src/bindings/rust/Cargo.toml"
  ;;
go)
  need go pkg-config cc
  # `#cgo pkg-config: minimax` finds the build tree through this file.
  mkdir -p "$work/pkgconfig"
  cat >"$work/pkgconfig/minimax.pc" <<PC
Name: minimax
Description: libminimax build tree
Version: 0
Libs: -L$lib -lminimax
Cflags: -I$src/include
PC
  export PKG_CONFIG_PATH=$work/pkgconfig GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on
  export GOCACHE=$work/go-cache GOPATH=$work/go-path
  cd "$src/bindings/go"
  go vet ./...
  go test -count=1 ./...
  # The example must build and serve its concurrent requests.
  out=$(go run ./examples/concurrent "$model" 4)
  echo "$out"
  grep -q "^4 requests, 16 tokens generated" <<<"$out"
  ;;
csharp)
  need mcs mono cc
  out=$work/csharp
  mkdir -p "$out"
  mcs -langversion:7.2 -warnaserror -target:library -out:"$out/Minimax.dll" "$src"/bindings/csharp/src/*.cs
  cp "$src/bindings/csharp/src/Minimax.dll.config" "$out/"
  mcs -langversion:7.2 -warnaserror -r:"$out/Minimax.dll" -out:"$out/Minimax.Tests.exe" \
    "$src"/bindings/csharp/tests/*.cs
  mono --debug "$out/Minimax.Tests.exe" "$src"
  ;;
*)
  echo "run_binding.sh: unknown binding '$lang'" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# Installs the build into a temporary prefix and uses it the three ways a host would:
# the files themselves (SONAME links, header, minimax.pc), find_package(minimax) from a separate
# CMake project, and examples/c_embed built with nothing but `pkg-config --cflags --libs minimax`.
#
#   install_test.sh BUILD_DIR SOURCE_DIR LIBDIR VERSION MODEL_DIR
set -euo pipefail
build=$1 src=$2 libdir_rel=$3 version=$4 model=$5

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
libdir=$prefix/$libdir_rel
unset DESTDIR PKG_CONFIG_PATH CMAKE_PREFIX_PATH
fail() { echo "install test: $*" >&2; exit 1; }
step() { echo "--- $*"; }

step "cmake --install into a temporary prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null

step "shared library and SONAME links"
[[ -L $libdir/libminimax.so ]] || fail "libminimax.so is not a symlink"
[[ $(readlink "$libdir/libminimax.so") == libminimax.so.1 ]] ||
  fail "libminimax.so -> $(readlink "$libdir/libminimax.so"), expected libminimax.so.1"
[[ -L $libdir/libminimax.so.1 ]] || fail "libminimax.so.1 is not a symlink"
real=$(readlink "$libdir/libminimax.so.1")
[[ $real == "libminimax.so.$version" && -f $libdir/$real && ! -L $libdir/$real ]] ||
  fail "libminimax.so.1 -> $real, expected the file libminimax.so.$version"
soname=$(objdump -p "$libdir/$real" | awk '$1 == "SONAME" {print $2}')
[[ $soname == libminimax.so.1 ]] || fail "SONAME is '$soname', expected libminimax.so.1"
# (type A is the version node of the symbol map, not a symbol)
others=$(nm -D --defined-only "$libdir/$real" | awk 'NF == 3 && $2 != "A" && $3 !~ /^mmx_/ {print $3}')
[[ -z $others ]] || fail "symbols exported besides mmx_*: $(echo "$others" | tr "\n" " " | head -c 300)"

step "header: only include/minimax.h, identical to the source"
[[ $(ls "$prefix/include") == minimax.h ]] || fail "installed headers: $(ls "$prefix/include")"
cmp -s "$prefix/include/minimax.h" "$src/include/minimax.h" || fail "installed minimax.h differs"

step "pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
[[ $(pkg-config --modversion minimax) == "$version" ]] || fail "minimax.pc version is not $version"
flags=$(pkg-config --cflags --libs minimax)
[[ $flags == *"-I$prefix/include"* && $flags == *"-L$libdir"* && $flags == *-lminimax* ]] ||
  fail "pkg-config flags do not point into the prefix: $flags"

step "CMake package: find_package(minimax $version) from a separate project"
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DMMX_VERSION="$version" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer"

step "examples/c_embed built with pkg-config only, run on $model"
cp "$src/examples/c_embed/main.c" "$src/examples/c_embed/Makefile" "$tmp/"
make -s -C "$tmp" c_embed
# Captured first: with pipefail, `ldd | grep -q` fails whenever grep exits before ldd has
# written everything (ldd then dies of SIGPIPE).
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/c_embed")
[[ $resolved == *"$libdir/libminimax.so.1"* ]] ||
  fail "c_embed does not resolve libminimax from the prefix"
out=$(LD_LIBRARY_PATH=$libdir "$tmp/c_embed" "$model" "Once upon a time")
[[ $out == "Once upon a time"* ]] || fail "unexpected c_embed output: $out"
echo "$out"

step "installed minimax-cli (if examples were built)"
if [[ -x $prefix/bin/minimax-cli ]]; then
  "$prefix/bin/minimax-cli" --version
  "$prefix/bin/minimax-cli" info --model "$model" >/dev/null || fail "installed minimax-cli cannot load $model"
fi
echo "install test: ok"

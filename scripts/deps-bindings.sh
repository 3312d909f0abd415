#!/usr/bin/env bash
# Installs the toolchains the Rust, Go and C# bindings need, from Debian's own packages, and
# only what is missing (a second run does nothing; apt-get update runs only before an
# install). Rust already installed another way (rustup) is used as it is.
#
#   Rust: cargo, rustc      Go: golang-go (1.19 on Debian 12)      C#: mono-devel (mcs, mono)
#
# The binding tests also need a C compiler and pkg-config, which scripts/deps.sh installs.
# Works as root or through sudo.
set -euo pipefail

missing=()
command -v cargo >/dev/null && command -v rustc >/dev/null || missing+=(cargo rustc)
command -v go >/dev/null || missing+=(golang-go)
command -v mcs >/dev/null && command -v mono >/dev/null || missing+=(mono-devel)
if ((${#missing[@]} == 0)); then exit 0; fi

source "$(dirname "$0")/apt_install.sh"
apt_install deps-bindings.sh "${missing[@]}"

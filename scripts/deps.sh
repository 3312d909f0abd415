#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that building and testing libminimax need, and only
# when one of them is missing (a second run does nothing). Works as root or through sudo.
set -euo pipefail

packages=(build-essential cmake pkg-config libopenblas-dev nlohmann-json3-dev
          libsentencepiece-dev libpcre2-dev libgtest-dev libbenchmark-dev ccache)

if ! command -v dpkg-query >/dev/null; then
  echo "deps.sh: not a Debian-based system; install the equivalents of: ${packages[*]}" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"install ok installed"* ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi

source "$(dirname "$0")/apt_install.sh"
apt_install deps.sh "${missing[@]}"

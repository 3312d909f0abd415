#!/usr/bin/env bash
# Quick start: installs what is missing, builds libminimax and minimax-cli, and streams a
# continuation of the prompt from the bundled demo model.
#
#   scripts/demo.sh "Write a poem about penguins" [more minimax-cli options, e.g. --max-tokens 64]
#
# The build directory is build/ (MMX_BUILD_DIR overrides it); the CUDA backend is built when
# nvcc is found and used when a GPU is present, otherwise everything runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-Write a poem about penguins}
shift $(($# > 0 ? 1 : 0))
build=${MMX_BUILD_DIR:-build}

scripts/deps.sh
if [[ ! -f models/demo/config.json ]]; then
  echo "demo.sh: the demo model (models/demo) is missing from this checkout" >&2
  exit 1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target minimax-cli -j "$(nproc)"
echo >&2
printf '%s' "$prompt"  # the continuation streams right after it
# The demo model was trained on chat-formatted text, so the prompt goes in as a user turn.
# Sampling defaults suited to a small model; options given after the prompt override them.
exec "$build/minimax-cli" generate --model models/demo --chat --prompt "$prompt" \
  --max-tokens 200 --temperature 0.7 --top-p 0.9 --repetition-penalty 1.1 "$@"

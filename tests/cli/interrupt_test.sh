#!/usr/bin/env bash
# Ctrl-C while minimax-cli generates: the request is cancelled, the stats are still printed,
# and the exit status is 130.   usage: interrupt_test.sh MINIMAX_CLI MODEL_DIR
set -euo pipefail
cli=$1 model=$2
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# A generation far longer than the test waits; --ignore-eos so it cannot end early.
"$cli" generate --model "$model" --prompt-tokens 1,2,3 --max-tokens 100000 --ignore-eos \
  >/dev/null 2>"$err" &
pid=$!
sleep 2
kill -INT "$pid"
status=0
wait "$pid" || status=$?
if [[ $status -ne 130 ]]; then
  echo "expected exit status 130 after SIGINT, got $status"; cat "$err"; exit 1
fi
if ! grep -q "cancelled" "$err"; then
  echo "expected the final stats with finish reason 'cancelled' on stderr:"; cat "$err"; exit 1
fi
echo "interrupt: ok"

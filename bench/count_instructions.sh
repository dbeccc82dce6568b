#!/bin/bash
# Instructions per store run, sender and receiver, counted by valgrind (callgrind): unlike
# wall time, the count barely moves on a noisy machine, so it shows what a change did.
#
# usage: bench/count_instructions.sh CORPUS WINDOW      e.g. small 1
#   CORPUS is a directory under bench/.cache/corpus (make bench creates them).
#   Each side runs twice (one store run, then two); the difference is one run's work,
#   without start-up. Set PYTHONPATH to a directory holding another checkout's package
#   as `dicomwire` to count that version instead. SERVE_MODE=--no-fsync counts a storing
#   node instead of --discard; PORT=N listens on N instead of 11199. Needs valgrind;
#   takes a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$1 window=$2 port=${PORT:-11199} out=$(mktemp -d)
python=.venv/bin/python
count() { grep -oP "refs:\s+\K[0-9,]+" "$1" | tr -d ,; }
run() {  # $1: store runs
  valgrind --tool=callgrind --callgrind-out-file="$out/r$1.out" $python .venv/bin/dicomwire \
    serve --host 127.0.0.1 --port $port --max-pdu 131072 --storage "$out/store" \
    "${SERVE_MODE:---discard}" \
    > "$out/r$1.log" 2>&1 &
  local server=$!
  for _ in $(seq 100); do sleep 0.3; (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; done
  valgrind --tool=callgrind --callgrind-out-file="$out/s$1.out" $python bench/store_loop.py \
    "bench/.cache/corpus/$corpus" "$window" "$1" $port > "$out/s$1.log" 2>&1
  kill -INT $server; wait $server || true
}
run 1
run 2
sender=$(( ($(count "$out/s2.log") - $(count "$out/s1.log")) / 1000000 ))
receiver=$(( ($(count "$out/r2.log") - $(count "$out/r1.log")) / 1000000 ))
echo "$corpus, window $window: sender ${sender} M instructions per run, receiver ${receiver} M"
rm -rf "$out"

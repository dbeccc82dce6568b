#!/bin/bash
# A mypyc-compiled copy of dicomwire for A/B measurements (issue 18), never installed.
#
# usage: bench/mypyc_build.sh DIR [MODULE.py ...]
#   Copies src/ to DIR/dicomwire and compiles the given modules (paths relative to src/;
#   default: the sans-I/O core that compiles today) with mypyc in place. Every module not
#   compiled stays pure Python, and a compiled module's .so is found before its .py, so
#       PYTHONPATH=DIR bench/count_instructions.sh small 1
#       PYTHONPATH=DIR python bench/compare.py --quick --scenarios small,ct
#       PYTHONPATH=DIR pytest tests/ul tests/dimse
#   measure and test the compiled build against the same checkout. Needs gcc and the
#   Python headers (python3-config --includes); takes about a minute.
#   Not compiled, and why (docs/performance.md, "Issue 18, round two"): ul/pdu.py and
#   dimse/primitives.py (ClassVar constants in dataclasses), dimse/status.py (an int
#   subclass), dimse/messages.py (async generators).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "$1")
shift
modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(ul/framer.py ul/fsm.py ul/machine.py ul/session.py dimse/commands.py dimse/dispatcher.py)
fi
rm -rf "$out" && mkdir -p "$out"
cp -r src "$out/dicomwire"
find "$out/dicomwire" -name __pycache__ -prune -exec rm -rf {} +
cd "$out"
"$OLDPWD/.venv/bin/mypyc" "${modules[@]/#/dicomwire/}" > "$out/mypyc.log" 2>&1 \
  || { tail -20 "$out/mypyc.log"; exit 1; }
ls "$out"/dicomwire/*/*.so

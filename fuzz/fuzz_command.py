#!/usr/bin/env python3
"""atheris harness — command set decode: dicomwire.dimse.commands (PS3.7 §6.3.1).

decode_command() and validate_command() raise only CommandError.

    python fuzz/fuzz_command.py fuzz/corpus/command -max_total_time=600

The target is ``targets.TARGETS["command"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("command")

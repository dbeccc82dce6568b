#!/usr/bin/env python3
"""atheris harness — the framer: dicomwire.ul.framer.PDUFramer (PS3.8 §9.3.1).

Fed in chunks chosen by the input: only PDUError, the same PDUs whatever
the chunking, buffering bounded by the configured limits.

    python fuzz/fuzz_framer.py fuzz/corpus/framer -max_total_time=600

The target is ``targets.TARGETS["framer"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("framer")

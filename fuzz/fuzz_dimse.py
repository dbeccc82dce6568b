#!/usr/bin/env python3
"""atheris harness — the acceptor's sans-I/O DIMSE dispatcher (PS3.7 §7.5, Annex D.3.3.3).

P-DATA-TF PDUs into the production DimseDispatcher, driven as DimseSession drives it:
only DimseProtocolError; neither window exceeded; every response answers its request.

    python fuzz/fuzz_dimse.py fuzz/corpus/dimse -max_total_time=600

The target is ``targets.TARGETS["dimse"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("dimse")

#!/usr/bin/env python3
"""atheris harness — PDU decode: dicomwire.ul.pdu.decode (PS3.8 §9.3).

Only PDUError may escape; whatever decodes must re-encode byte for byte.

    python fuzz/fuzz_pdu.py fuzz/corpus/pdu -max_total_time=600

The target is ``targets.TARGETS["pdu"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("pdu")

#!/usr/bin/env python3
"""atheris harness — association negotiation (PS3.8 §9.3.2-9.3.4, PS3.7 Annex D).

accept_or_reject() answers every decodable A-ASSOCIATE-RQ with a PDU that
encodes; read_accept() reads every decodable A-ASSOCIATE-AC.

    python fuzz/fuzz_negotiation.py fuzz/corpus/negotiation -max_total_time=600

The target is ``targets.TARGETS["negotiation"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("negotiation")

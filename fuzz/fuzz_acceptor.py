#!/usr/bin/env python3
"""atheris harness — the whole acceptor through the sans-I/O AssociationSession (PS3.8 Table 9-10).

Bytes in chunks into the production session (it answers the A-ASSOCIATE-RQ through an
AcceptorPolicy, release collisions and Sta12 itself); what it delivers goes into the
production DimseDispatcher, whose responses go back through the session; the release
answer and ARTIM as the node adds them: never an exception, Sta1 once the transport closed.

    python fuzz/fuzz_acceptor.py fuzz/corpus/acceptor -max_total_time=600

The target is ``targets.TARGETS["acceptor"]``; seed the corpus first:
``python fuzz/seed_corpus.py``.
"""

from _harness import main

if __name__ == "__main__":
    main("acceptor")

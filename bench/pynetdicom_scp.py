"""A pynetdicom Storage SCP for bench/compare.py: bound to 127.0.0.1, discarding by default.

``python bench/pynetdicom_scp.py --port N [--max-pdu N] [--output DIR]``

Answers C-ECHO and C-STORE for every storage SOP class. Without ``--output`` the data set
is never decoded (like ``storescp --ignore``); with it the encoded data set is written as
a Part 10 file, the way pynetdicom's documentation recommends. On SIGTERM/SIGINT it
prints ``received N`` (instances answered with success) and exits 0.

A benchmark peer only: nothing under src/ imports pynetdicom.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-pdu", type=int, default=131072, help="0 = unlimited")
    parser.add_argument("--output", type=Path, help="write each instance here (else discard)")
    args = parser.parse_args()
    # pynetdicom's warnings and errors (aborts, timeouts) go to the log compare.py keeps
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    received = 0
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        nonlocal received
        if args.output is not None:
            name = args.output / f"{event.request.AffectedSOPInstanceUID}.dcm"
            with open(name, "wb") as file:
                file.write(event.encoded_dataset())
        with lock:
            received += 1
        return 0x0000

    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = args.max_pdu
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = ae.start_server(
        (args.host, args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
    print(f"received {received}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

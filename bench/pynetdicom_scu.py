"""A pynetdicom Storage SCU for bench/compare.py.

``python bench/pynetdicom_scu.py HOST PORT PATH... [--max-pdu N] [--each] [--aec AE]``

Sends every Part 10 file under PATH (files or directories) with ``send_c_store(path)``,
pynetdicom's default way (the file is read and decoded with dcmread). One association
for all files, or with ``--each`` one association per file, one after the other. Prints
``stored N of M`` and exits 0 only when every instance was answered with success.

A benchmark peer only: nothing under src/ imports pynetdicom.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from pynetdicom.association import Association

TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
MAX_REPORTED = 5  # failures printed; the count says the rest


def files_under(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return found


def send(assoc: Association, files: list[Path]) -> int:
    stored = failed = 0
    for path in files:
        status = assoc.send_c_store(path)
        if status and getattr(status, "Status", None) == 0x0000:
            stored += 1
        else:
            failed += 1
            if failed <= MAX_REPORTED:
                print(f"failed: {path}: {status}", file=sys.stderr)
    return stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--max-pdu", type=int, default=131072, help="0 = unlimited")
    parser.add_argument("--aec", default="ANY-SCP")
    parser.add_argument("--each", action="store_true", help="one association per file")
    args = parser.parse_args()
    # pynetdicom's warnings and errors (aborts, timeouts) go to the log compare.py keeps
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    files = files_under(args.paths)
    sop_classes = sorted({str(read_file_meta_info(p).MediaStorageSOPClassUID) for p in files})
    ae = AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = args.max_pdu
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, TRANSFER_SYNTAXES)

    stored = 0
    batches = [[path] for path in files] if args.each else [files]
    for batch in batches:
        assoc = ae.associate(args.host, args.port, ae_title=args.aec)
        if not assoc.is_established:
            print("association failed", file=sys.stderr)
            break
        try:
            stored += send(assoc, batch)
        finally:
            assoc.release()
    print(f"stored {stored} of {len(files)}", flush=True)
    return 0 if files and stored == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())

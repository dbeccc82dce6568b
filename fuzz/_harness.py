"""Shared driver of the atheris harnesses (libFuzzer under the hood), see ``targets.py``.

Each ``fuzz_<target>.py`` calls :func:`main` with its target's name. dicomwire is
instrumented for coverage as it is imported; unless given on the command line,
libFuzzer's limits are set so that a slow or memory-hungry input is a finding:
``-rss_limit_mb=1024 -timeout=10 -max_len=70000``. The library's log lines (every
abort and rejection the acceptor decides is logged, as in production) are silenced: a
finding is an exception, not a line. Usage::

    python fuzz/fuzz_pdu.py fuzz/corpus/pdu -max_total_time=600
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import atheris

DEFAULT_FLAGS = ("-rss_limit_mb=1024", "-timeout=10", "-max_len=70000")


def main(name: str) -> None:
    with atheris.instrument_imports(include=["dicomwire", "targets"]):
        import targets
    target: Callable[[bytes], None] = targets.TARGETS[name]
    logging.getLogger("dicomwire").setLevel(logging.CRITICAL + 1)
    argv = list(sys.argv)
    for flag in DEFAULT_FLAGS:
        if not any(arg.startswith(flag.split("=")[0] + "=") for arg in argv[1:]):
            argv.append(flag)
    atheris.Setup(argv, target)
    atheris.Fuzz()

"""``dicomwire certs DIR``: a test CA and node certificates for trying TLS (PS3.15 Annex B).

For tests only: the CA key is written too (see :mod:`..certs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .flags import positive

__all__ = ["add_parser", "run"]


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``certs`` to ``subparsers``; its ``run`` is :func:`run`."""
    certs = subparsers.add_parser(
        "certs",
        help="create a test CA and node certificates for trying TLS locally",
        description=(
            "Write ca.pem and, for each name, NAME-rsa.pem / NAME-ecdsa.pem with their keys "
            "and PKCS#12 bundles (password 'dicomwire' unless --password is given). For "
            "tests only: the CA key is written too."
        ),
    )
    certs.add_argument("directory", type=Path, help="where to write the files")
    certs.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="host name a certificate is for; repeatable (localhost)",
    )
    certs.add_argument("--password", default="dicomwire", help="PKCS#12 password (dicomwire)")
    certs.add_argument("--days", type=positive, default=365, help="validity in days (365)")
    certs.set_defaults(run=run)
    return certs


def run(args: argparse.Namespace) -> int:
    """Run ``dicomwire certs``; the exit status."""
    from ..certs import make_test_pki

    ca, issued = make_test_pki(
        args.directory,
        args.names or ["localhost"],
        password=args.password.encode(),
        days=args.days,
    )
    print(f"CA: {ca}")
    for item in issued:
        print(f"{item.name} ({item.kind}): {item.certificate} {item.key} {item.pkcs12}")
    return 0

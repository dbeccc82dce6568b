"""Micro benchmarks of PS3.15 secure transport in process: TLS beside plain TCP.

- one C-ECHO round trip on an open association (record layer cost on small messages);
- one C-STORE of a 512x512 CT image, ~0.5 MB (record layer cost on bulk data);
- a whole association: connect (and handshake), C-ECHO, release.

Run: ``pytest -q bench/test_bench_tls.py --benchmark-only``; compare the ``plain`` and
``tls`` rows of each group. Nothing here asserts a timing; the assertions check that each
benchmark did what it claims (status success, TLS really negotiated).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicomwire.dimse.session import DimseSession, open_session
from dicomwire.services.certs import make_test_pki
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig, store_dataset
from dicomwire.services.verification import VERIFICATION_SOP_CLASS, echo, echo_on
from dicomwire.testing.corpus import CT_IMAGE_STORAGE, make_ct
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import RequestorConfig
from dicomwire.ul.tls import TLSConfig

LOCALHOST = "127.0.0.1"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
TIMEOUTS = Timeouts(artim=10, acse=10, dimse=10, network_idle=30, connect=10)


@dataclass
class Bench:
    loop: asyncio.AbstractEventLoop
    node: Node
    plain_port: int
    tls_port: int
    client_tls: TLSConfig
    sessions: dict[str, DimseSession] = field(default_factory=dict)
    _open: list[AbstractAsyncContextManager[DimseSession]] = field(default_factory=list)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def port(self, mode: str) -> int:
        return self.tls_port if mode == "tls" else self.plain_port

    def tls(self, mode: str) -> TLSConfig | None:
        return self.client_tls if mode == "tls" else None

    def session(self, mode: str) -> DimseSession:
        if mode not in self.sessions:
            config = RequestorConfig(
                "BENCH",
                "DICOMWIRE",
                [
                    (VERIFICATION_SOP_CLASS, [IMPLICIT_VR_LE]),
                    (CT_IMAGE_STORAGE, [EXPLICIT_VR_LE]),
                ],
            )
            manager = open_session(
                LOCALHOST, self.port(mode), config, timeouts=TIMEOUTS, tls=self.tls(mode)
            )
            self.sessions[mode] = self.run(manager.__aenter__())
            self._open.append(manager)
        return self.sessions[mode]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    directory = tmp_path_factory.mktemp("pki")
    ca, _ = make_test_pki(directory, ("localhost",))

    def tls(kind: str) -> TLSConfig:
        return TLSConfig(
            certificate=directory / f"localhost-{kind}.pem",
            key=directory / f"localhost-{kind}-key.pem",
            ca_file=ca,
        )

    loop = asyncio.new_event_loop()
    config = NodeConfig(
        host=LOCALHOST,
        port=0,
        tls=tls("rsa"),
        tls_port=0,
        storage=StorageConfig(root=Path("unused"), discard=True),
        shutdown_grace=1.0,
    )
    node = Node(config)
    loop.run_until_complete(node.start())
    ports = [int(s.getsockname()[1]) for s in node.server.sockets]
    state = Bench(loop, node, ports[0], ports[1], tls("ecdsa"))
    try:
        yield state
    finally:
        for manager in reversed(state._open):
            with contextlib.suppress(Exception):
                loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.run_until_complete(node.shutdown())
        loop.close()


def _ct_bytes() -> tuple[bytes, str, str]:
    ds = make_ct(0)
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, ds)
    return buffer.getvalue(), str(ds.SOPClassUID), str(ds.SOPInstanceUID)


@pytest.mark.benchmark(group="tls-echo-round-trip")
@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_echo_round_trip(benchmark: Any, bench: Bench, mode: str) -> None:
    session = bench.session(mode)
    assert not session.association.closed.done()
    assert (session.association.get_extra_info("ssl_object") is not None) == (mode == "tls")
    status = benchmark(lambda: bench.run(echo_on(session)))
    assert status.is_success


@pytest.mark.benchmark(group="tls-store-512x512-ct")
@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_store_ct_image(benchmark: Any, bench: Bench, mode: str) -> None:
    session = bench.session(mode)
    data, sop_class, sop_instance = _ct_bytes()

    def store_one() -> Any:
        return bench.run(
            store_dataset(
                session,
                data,
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax=EXPLICIT_VR_LE,
            )
        )

    status = benchmark(store_one)
    assert status.is_success
    benchmark.extra_info["megabytes"] = len(data) / 1e6


@pytest.mark.benchmark(group="tls-whole-association")
@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_associate_echo_release(benchmark: Any, bench: Bench, mode: str) -> None:
    def once() -> Any:
        return bench.run(
            echo(
                LOCALHOST,
                bench.port(mode),
                called_ae_title="DICOMWIRE",
                tls=bench.tls(mode),
                timeouts=TIMEOUTS,
            )
        )

    status = benchmark.pedantic(once, rounds=30, warmup_rounds=2)
    assert status.is_success

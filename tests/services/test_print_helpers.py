"""Helpers the print tests share (no tests here): the virtual printer as a node in this
event loop or in a thread of its own, and synthetic images with known pixels."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.print import Print, PrintConfig
from dicomwire.services.service import Service
from dicomwire.services.storage import StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.ul.association import Timeouts

LOCALHOST = "127.0.0.1"
PRINTER_AE = "PRINTER"
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=20.0, connect=5.0)
T = TypeVar("T")


def printer_config(spool: Path, **settings: Any) -> PrintConfig:
    return PrintConfig(spool=spool, **settings)


@contextlib.asynccontextmanager
async def printer_node(
    spool: Path, config: PrintConfig | None = None, extra: list[Service] | None = None
) -> AsyncIterator[tuple[Node, Print]]:
    """A node (Verification + Print) on 127.0.0.1, port 0, in this event loop."""
    service = Print(config or printer_config(spool))
    node_config = NodeConfig(
        ae_titles=[PRINTER_AE],
        host=LOCALHOST,
        port=0,
        storage=StorageConfig(root=spool, discard=True),
        timeouts=TIMEOUTS,
        shutdown_grace=1.0,
    )
    async with Node(node_config, services=[Verification(), service, *(extra or [])]) as node:
        yield node, service


class PrinterThread:
    """The virtual printer in a thread with its own loop, for blocking peers."""

    def __init__(self, spool: Path, config: PrintConfig | None = None) -> None:
        self.spool = spool
        self.config = config
        self.port = 0
        self.service: Print | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with printer_node(self.spool, self.config) as (node, service):
            self.port, self.service = node.port, service
            self._ready.set()
            await self._stop.wait()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run ``coroutine`` on the printer's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> PrinterThread:
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError("the printer did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the printer thread did not stop"


@contextlib.contextmanager
def printer_thread(spool: Path, config: PrintConfig | None = None) -> Iterator[PrinterThread]:
    with PrinterThread(spool, config) as printer:
        yield printer


def image(
    pixels: bytes,
    rows: int,
    columns: int,
    *,
    bits: int = 8,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    planar: int = 0,
    **attributes: Any,
) -> Dataset:
    """A Secondary Capture image with exactly these pixels (little endian)."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = generate_uid()
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel = samples
    dataset.PhotometricInterpretation = photometric
    if samples == 3:
        dataset.PlanarConfiguration = planar
    dataset.BitsAllocated = 8 if bits == 8 else 16
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = pixels
    return dataset


def halves(size: int = 32) -> Dataset:
    """Top half black (0), bottom half white (255): shows orientation on the film."""
    return image(bytes(size * size // 2) + b"\xff" * (size * size // 2), size, size)


def flat(value: int, size: int = 32, **kwargs: Any) -> Dataset:
    return image(bytes([value]) * (size * size), size, size, **kwargs)

"""What the storage SCP refuses, why it says so, and that ``--discard`` refuses the same.

PS3.4 §B.2.3: a data set that ends inside an element (pydicom's ``MR_truncated.dcm``, a CT
cut in the middle of its pixel data) is answered with a failure status of the C000 family
("cannot understand") whose Error Comment (0000,0902) says where it ends, and is not
stored. Every refusal (C000, A900, 0122, A700, 0111) is logged at WARNING - the level
``dicomwire serve`` shows by default - with the peer's AE title and address, the SOP
Instance UID and the reason; every rejected association (A-ASSOCIATE-RJ, PS3.8 Table 9-21)
likewise with the calling and called AE titles, the address and the reason in words.
``discard=True`` (``--discard``) makes every check; only the file is not written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydicom.data
import pytest
from pydicom import Dataset, dcmread

from dicomwire.dimse.commands import Tag
from dicomwire.dimse.primitives import CStoreRQ
from dicomwire.dimse.session import DimseSession, open_session
from dicomwire.dimse.status import Status
from dicomwire.errors import AssociationRejected
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.storage import StorageConfig
from dicomwire.testing.corpus import CT_IMAGE_STORAGE, SECONDARY_CAPTURE_STORAGE, make_ct
from dicomwire.ul.negotiation import RequestorConfig

from ..conftest import part10_data_set
from ..conftest import run_bounded as run
from ._support import NODE_AE, NODE_TIMEOUTS, serving

LOCALHOST = "127.0.0.1"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CALLING_AE = "MODALITY7"
TIMEOUTS = NODE_TIMEOUTS
SCP_LOGGER = "dicomwire.services.storage.scp"


@contextlib.asynccontextmanager
async def session_to(node: Node, *sop_classes: str) -> AsyncIterator[DimseSession]:
    contexts = [(uid, [EXPLICIT_VR_LE]) for uid in sop_classes]
    config = RequestorConfig(CALLING_AE, NODE_AE, contexts)
    async with open_session(LOCALHOST, node.port, config, timeouts=TIMEOUTS) as session:
        yield session


async def c_store(
    session: DimseSession,
    data: bytes,
    sop_class: str,
    instance: str,
    *,
    context_class: str | None = None,
) -> tuple[Status, str]:
    """Send ``data`` as a C-STORE on the context of ``context_class`` (default: the
    command's own SOP class); (status, Error Comment)."""
    context = session.find_context(context_class or sop_class)
    command = CStoreRQ(sop_class, instance).to_command()
    operation = await session.request(context.context_id, command, data)
    response = await operation.wait()
    return response.status, str(response.command.get(Tag.ErrorComment) or "")


def files_under(root: Path) -> list[Path]:
    """Every file under ``root`` but the node's database (``.dicomwire``)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and ".dicomwire" not in p.parts)


def explicit_le(ds: Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_implicit_VR = False
    fp.is_little_endian = True
    write_dataset(fp, ds)
    return fp.getvalue()


def mr_truncated() -> tuple[bytes, str]:
    """pydicom's MR_truncated.dcm: its data set bytes and SOP Instance UID."""
    path = Path(pydicom.data.get_testdata_file("MR_truncated.dcm"))
    syntax, data = part10_data_set(path)
    assert syntax == EXPLICIT_VR_LE
    return data, str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def ct_cut_in_pixel_data() -> tuple[bytes, str]:
    ds = make_ct(3, rows=64, columns=64)
    data = explicit_le(ds)
    return data[: len(data) - 1000], str(ds.SOPInstanceUID)


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("discard", [False, True], ids=["storing", "discarding"])
@pytest.mark.parametrize("source", [mr_truncated, ct_cut_in_pixel_data], ids=["mr", "ct"])
def test_data_set_ending_inside_its_pixel_data_is_c000_and_not_stored(
    tmp_path: Path, discard: bool, source: Any
) -> None:
    root = tmp_path / "store"
    data, instance = source()
    sop_class = MR_IMAGE_STORAGE if source is mr_truncated else CT_IMAGE_STORAGE

    async def scenario() -> tuple[Status, str]:
        async with serving(root, discard=discard) as node, session_to(node, sop_class) as s:
            return await c_store(s, data, sop_class, instance)

    status, comment = run(scenario())
    assert status == 0xC000
    assert comment == "data set ends inside element (7FE0,0010)"
    assert files_under(root) == []


# --------------------------------------------------------------------------- --discard


def _good() -> tuple[bytes, str, str, str | None]:
    ds = make_ct(1, rows=8, columns=8)
    return explicit_le(ds), CT_IMAGE_STORAGE, str(ds.SOPInstanceUID), None


def _other_instance() -> tuple[bytes, str, str, str | None]:
    data, sop_class, _, _ = _good()
    return data, sop_class, "1.2.3.4.5.6", None


def _other_class() -> tuple[bytes, str, str, str | None]:
    data, _, instance, _ = _good()
    return data, SECONDARY_CAPTURE_STORAGE, instance, None


def _garbage() -> tuple[bytes, str, str, str | None]:
    return b"garbage!" * 8, CT_IMAGE_STORAGE, "1.2.3.4.5.7", None


def _truncated() -> tuple[bytes, str, str, str | None]:
    data, instance = ct_cut_in_pixel_data()
    return data, CT_IMAGE_STORAGE, instance, None


def _wrong_context() -> tuple[bytes, str, str, str | None]:
    data, sop_class, instance, _ = _good()
    return data, sop_class, instance, SECONDARY_CAPTURE_STORAGE


BAD_REQUESTS = {
    "good": (_good, 0x0000),
    "other-instance-uid": (_other_instance, 0xA900),
    "other-class-uid": (_other_class, 0xA900),
    "not-a-data-set": (_garbage, 0xC000),
    "truncated": (_truncated, 0xC000),
    "command-class-not-the-contexts": (_wrong_context, 0x0122),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_discard_answers_every_request_as_storing_does(tmp_path: Path, case: str) -> None:
    make, expected = BAD_REQUESTS[case]
    data, sop_class, instance, context_class = make()

    async def answer(discard: bool) -> tuple[Status, str]:
        root = tmp_path / ("discard" if discard else "store")
        async with (
            serving(root, discard=discard) as node,
            session_to(node, CT_IMAGE_STORAGE, SECONDARY_CAPTURE_STORAGE) as session,
        ):
            return await c_store(session, data, sop_class, instance, context_class=context_class)

    stored = run(answer(False))
    discarded = run(answer(True))
    assert stored == discarded
    assert stored[0] == expected
    assert files_under(tmp_path / "discard") == []
    stored_files = files_under(tmp_path / "store")
    assert len(stored_files) == (1 if expected == 0 else 0)


# --------------------------------------------------------------------------- log lines


@pytest.mark.parametrize("discard", [False, True], ids=["storing", "discarding"])
def test_each_refusal_is_logged_with_peer_instance_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, discard: bool
) -> None:
    ds = make_ct(2, rows=8, columns=8)
    data = explicit_le(ds)
    truncated, cut_instance = ct_cut_in_pixel_data()

    async def scenario() -> list[Status]:
        async with (
            serving(tmp_path / "store", discard=discard) as node,
            session_to(node, CT_IMAGE_STORAGE) as session,
        ):
            mismatch, _ = await c_store(session, data, CT_IMAGE_STORAGE, "1.2.3.99")
            cut, _ = await c_store(session, truncated, CT_IMAGE_STORAGE, cut_instance)
            return [mismatch, cut]

    with caplog.at_level(logging.WARNING, logger=SCP_LOGGER):
        assert run(scenario()) == [0xA900, 0xC000]
    lines = [r.getMessage() for r in caplog.records if r.name == SCP_LOGGER]
    assert len(lines) == 2
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == SCP_LOGGER)
    mismatch, cut = lines
    assert mismatch.startswith(f"refused C-STORE of 1.2.3.99 from {CALLING_AE} at 127.0.0.1:")
    assert "Error: data set does not match SOP Class (0xA900)" in mismatch
    assert "SOP Class/Instance UID in the data set differ from the command" in mismatch
    assert cut.startswith(f"refused C-STORE of {cut_instance} from {CALLING_AE} at 127.0.0.1:")
    assert "Error: cannot understand (0xC000): data set ends inside element (7FE0,0010)" in cut


@pytest.mark.parametrize(
    ("called", "calling", "reason"),
    [
        ("SOMEONE-ELSE", CALLING_AE, "called AE title not recognized"),
        (NODE_AE, "STRANGER", "calling AE title not recognized"),
    ],
)
def test_each_rejected_association_is_logged_with_both_titles_address_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, called: str, calling: str, reason: str
) -> None:
    from dicomwire.ul.negotiation import KnownNode

    async def scenario() -> AssociationRejected:
        config = NodeConfig(
            ae_titles=[NODE_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=tmp_path / "store"),
            known_nodes=[KnownNode(CALLING_AE)],
            timeouts=TIMEOUTS,
            shutdown_grace=1.0,
        )
        async with Node(config) as node:
            requestor = RequestorConfig(calling, called, [(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])])
            with pytest.raises(AssociationRejected) as rejected:
                async with open_session(LOCALHOST, node.port, requestor, timeouts=TIMEOUTS):
                    pass
            return rejected.value

    with caplog.at_level(logging.WARNING, logger="dicomwire.ul"):
        rejected = run(scenario())
    assert rejected.permanent
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "rejected association" in r.getMessage()
    ]
    assert len(lines) == 1
    assert lines[0].startswith(f"rejected association from {calling} to {called} at 127.0.0.1:")
    assert reason in lines[0]


def test_a_duplicate_refused_under_reject_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_ct(4, rows=8, columns=8)
    data = explicit_le(ds)
    instance = str(ds.SOPInstanceUID)

    async def scenario() -> list[tuple[Status, str]]:
        async with (
            serving(tmp_path / "store", duplicates="reject") as node,
            session_to(node, CT_IMAGE_STORAGE) as session,
        ):
            return [await c_store(session, data, CT_IMAGE_STORAGE, instance) for _ in range(2)]

    with caplog.at_level(logging.WARNING, logger=SCP_LOGGER):
        first, second = run(scenario())
    assert first[0] == 0x0000
    assert second == (0x0111, "duplicate SOP instance")
    (line,) = [r.getMessage() for r in caplog.records if r.name == SCP_LOGGER]
    assert line.startswith(f"refused C-STORE of {instance} from {CALLING_AE} at 127.0.0.1:")
    assert line.endswith("(0x0111): duplicate SOP instance")

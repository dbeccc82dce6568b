"""Delivery guarantees of the storage SCU (issue 13; PS3.4 Annex B, PS3.8 §7.3.1).

A peer that aborts the association on one file costs only that file: the SCU opens a new
association and sends the rest; the file it aborted on is tried a bounded number of times
and ends with the reason, never ``status None``. Files the SCU can tell are broken are
refused before the wire; the Error Comment a peer sends is shown with its status.
A pynetdicom SCP, or a dicomwire node with a scripted handler, plays the peer.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pynetdicom import AE, StoragePresentationContexts, evt  # type: ignore[import-untyped]

from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.primitives import CStoreRQ
from dicomwire.dimse.session import Request, open_session
from dicomwire.services.node import Node, NodeConfig
from dicomwire.services.service import CustomService
from dicomwire.services.storage import (
    FileOutcome,
    StoreSummary,
    plan_contexts,
    send_files,
    store_files,
)
from dicomwire.services.storage.scu import inspect_file
from dicomwire.testing.corpus import write_corpus
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import RequestorConfig

LOCALHOST = "127.0.0.1"
PEER_AE = "SCRIPTED"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CLI = [sys.executable, "-m", "dicomwire.services.cli"]
TIMEOUTS = Timeouts(artim=5.0, acse=10.0, dimse=10.0, network_idle=10.0, connect=5.0)
#: The issue's reproduction: the second file is the one the peer aborts on.
NAMES = ("CT_small.dcm", "image_dfl.dcm", "liver_1frame.dcm", "test-SR.dcm", "waveform_ecg.dcm")


def copy_testdata(directory: Path, names: tuple[str, ...] = NAMES) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        source = get_testdata_file(name)
        assert source is not None, name
        copies.append(Path(shutil.copy(str(source), directory / name)))
    return copies


def scripted_scp(abort_on: str | None = None, refuse_with: tuple[int, str] | None = None) -> Any:
    """A pynetdicom SCP that aborts (or refuses) the instance ``abort_on``; stores the rest."""
    received: list[str] = []

    def on_store(event: Any) -> Any:
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid == abort_on:
            if refuse_with is not None:
                answer = Dataset()
                answer.Status = refuse_with[0]
                answer.ErrorComment = refuse_with[1]
                return answer
            event.assoc.abort()
            return 0xA700
        received.append(uid)
        return 0x0000

    ae = AE(ae_title=PEER_AE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
    for context in StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, context.transfer_syntax)
    server = ae.start_server(
        (LOCALHOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    return server, received


def send(port: int, paths: list[Path], **options: Any) -> StoreSummary:
    return asyncio.run(
        asyncio.wait_for(
            store_files(
                LOCALHOST,
                port,
                paths,
                called_ae_title=PEER_AE,
                timeouts=TIMEOUTS,
                **options,
            ),
            60,
        )
    )


def test_a_peer_aborting_one_file_costs_only_that_file(tmp_path: Path) -> None:
    files = copy_testdata(tmp_path / "in")
    culprit = files[1]
    culprit_uid = inspect_file(culprit).sop_instance_uid
    server, received = scripted_scp(abort_on=culprit_uid)
    try:
        summary = send(server.server_address[1], [tmp_path / "in"], retries=2)
    finally:
        server.shutdown()

    by_path = {o.path: o for o in summary.outcomes}
    assert summary.sent == 4 and summary.failures == 1
    expected = {inspect_file(p).sop_instance_uid for p in files if p != culprit}
    assert set(received) == expected
    failed = by_path[culprit]
    assert failed.status is None
    assert failed.attempts == 3  # tried retries + 1 times, then given up with the reason
    assert failed.error and "Sta1" not in failed.error
    line = failed.describe()
    assert failed.kind == "failed"
    assert line.startswith("no answer: A-ABORT by the peer") and "None" not in line
    assert line.endswith("(after 3 attempts)")
    for path in files:
        if path != culprit:
            assert by_path[path].delivered and by_path[path].attempts == 1


def test_a_refusal_shows_the_peers_error_comment_and_is_not_retried(tmp_path: Path) -> None:
    files = copy_testdata(tmp_path / "in", NAMES[:2])
    refused = files[0]
    server, _ = scripted_scp(
        abort_on=inspect_file(refused).sop_instance_uid,
        refuse_with=(0xC123, "no room for CT today"),
    )
    try:
        summary = send(server.server_address[1], files)
    finally:
        server.shutdown()

    by_path = {o.path: o for o in summary.outcomes}
    outcome = by_path[refused]
    assert outcome.status == 0xC123 and outcome.attempts == 1
    assert outcome.error_comment == "no room for CT today"
    assert outcome.describe().startswith("refused by the peer, status C123H")
    assert "no room for CT today" in outcome.describe()
    assert by_path[files[1]].delivered


def test_broken_files_are_refused_before_the_wire_with_the_reason(tmp_path: Path) -> None:
    directory = tmp_path / "in"
    (truncated,) = copy_testdata(directory, ("MR_truncated.dcm",))
    (whole,) = copy_testdata(directory, ("CT_small.dcm",))
    cut = directory / "CT_cut.dcm"
    cut.write_bytes(whole.read_bytes()[:-1000])
    (directory / "notes.txt").write_text("not DICOM")
    server, received = scripted_scp()
    try:
        summary = send(server.server_address[1], [directory])
    finally:
        server.shutdown()

    by_path = {o.path: o for o in summary.outcomes}
    assert received == [inspect_file(whole).sop_instance_uid]
    for path in (truncated, cut):
        outcome = by_path[path]
        assert outcome.attempts == 0 and outcome.permanent and outcome.status is None
        assert "truncated" in outcome.describe()
    assert by_path[directory / "notes.txt"].skipped
    assert (summary.sent, summary.failures, summary.skipped) == (1, 2, 1)


def test_uids_come_from_the_data_set_and_a_disagreement_is_said(tmp_path: Path) -> None:
    (path,) = copy_testdata(tmp_path, ("rtdose_expb.dcm",))
    dataset = dcmread(path, stop_before_pixels=True)
    assert dataset.file_meta.MediaStorageSOPInstanceUID != dataset.SOPInstanceUID

    info = inspect_file(path)

    assert info.sop_instance_uid == dataset.SOPInstanceUID
    assert info.note and "file meta" in info.note and dataset.SOPInstanceUID in info.note


def store_cli(port: int, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "store", "--no-progress", "-aec", PEER_AE, LOCALHOST, str(port)]
        + [str(argument) for argument in arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_names_the_peers_error_comment_and_each_skipped_file(tmp_path: Path) -> None:
    files = copy_testdata(tmp_path / "in", NAMES[:2])
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    server, _ = scripted_scp(
        abort_on=inspect_file(files[0]).sop_instance_uid,
        refuse_with=(0xA900, "SOP Class does not match the data set"),
    )
    try:
        result = store_cli(server.server_address[1], "-v", tmp_path / "in")
    finally:
        server.shutdown()

    assert result.returncode == 1
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert f"failed: {files[0]}: refused by the peer, status A900H" in "\n".join(lines)
    (refused,) = [line for line in lines if line.startswith(f"failed: {files[0]}")]
    assert refused.endswith(": SOP Class does not match the data set")
    assert any(line.startswith(f"sent: {files[1]}: status 0000H") for line in lines)
    assert any(
        line.startswith(f"skipped: {tmp_path / 'in' / 'notes.txt'}: not a DICOM") for line in lines
    )
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("sent 1 of 2 instances (0 warnings, 1 failures)")
    assert summary.endswith(", 1 skipped (not DICOM)")


def test_the_cli_says_why_an_empty_directory_sends_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not DICOM")

    empty = store_cli(9, tmp_path / "empty")  # nothing to send: no association is tried
    junk = store_cli(9, tmp_path / "junk")

    assert empty.returncode == 1
    assert f"nothing to send: no file in {tmp_path / 'empty'}" in empty.stderr
    assert junk.returncode == 1
    assert f"nothing to send: no DICOM file in {tmp_path / 'junk'}" in junk.stderr


def test_with_a_window_only_the_file_the_peer_aborts_on_is_lost(tmp_path: Path) -> None:
    """Eight C-STORE outstanding: the abort charges the oldest unanswered file alone."""
    files = write_corpus(tmp_path / "in", 12, "ct", rows=16, columns=16)
    culprit = files[3]
    culprit_uid = inspect_file(culprit).sop_instance_uid
    received: list[str] = []

    async def on_store(request: Request) -> int:
        primitive = request.primitive
        assert isinstance(primitive, CStoreRQ)
        if primitive.affected_sop_instance_uid == culprit_uid:
            request.session.abort()
            return 0xA700
        received.append(primitive.affected_sop_instance_uid)
        return 0x0000

    async def scenario() -> StoreSummary:
        service = CustomService({CT_IMAGE_STORAGE: {CommandField.C_STORE_RQ: on_store}})
        config = NodeConfig(host=LOCALHOST, port=0, shutdown_grace=1.0, timeouts=TIMEOUTS)
        async with Node(config, services=[service]) as node:
            return await store_files(
                LOCALHOST,
                node.port,
                [tmp_path / "in"],
                called_ae_title="DICOMWIRE",
                window=8,
                timeouts=TIMEOUTS,
            )

    summary = asyncio.run(asyncio.wait_for(scenario(), 60))

    by_path = {o.path: o for o in summary.outcomes}
    assert (summary.sent, summary.failures) == (11, 1)
    assert sorted(received) == sorted(
        inspect_file(p).sop_instance_uid for p in files if p != culprit
    )
    assert by_path[culprit].attempts == 3 and by_path[culprit].kind == "failed"
    assert all(by_path[p].attempts == 1 for p in files if p != culprit)


def test_a_peer_that_is_gone_ends_every_file_with_the_reason_in_bounded_tries(
    tmp_path: Path,
) -> None:
    files = copy_testdata(tmp_path / "in", NAMES[:3])
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind((LOCALHOST, 0))
        port = closed.getsockname()[1]

    summary = send(port, [tmp_path / "in"], retries=1)

    assert summary.failures == len(files)
    for outcome in summary.outcomes:
        assert outcome.attempts == 2 and outcome.status is None
        line = outcome.describe()
        assert line.startswith("not sent: ") and "None" not in line


def test_a_file_gone_between_inspection_and_sending_fails_alone(tmp_path: Path) -> None:
    files = copy_testdata(tmp_path / "in", NAMES[:3])
    infos = [inspect_file(path) for path in files]
    files[1].unlink()
    server, received = scripted_scp()

    async def scenario() -> list[FileOutcome]:
        config = RequestorConfig("SCU", PEER_AE, plan_contexts(infos))
        async with open_session(
            LOCALHOST, server.server_address[1], config, timeouts=TIMEOUTS
        ) as session:
            return await send_files(session, infos)

    try:
        outcomes = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        server.shutdown()

    assert [o.kind for o in outcomes] == ["sent", "failed", "sent"]
    assert outcomes[1].permanent and "cannot read the file" in outcomes[1].describe()
    assert received == [infos[0].sop_instance_uid, infos[2].sop_instance_uid]

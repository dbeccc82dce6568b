"""Micro benchmarks of DIMSE (PS3.7 §6.3.1, §9.3.1; PS3.8 Annex E): the C-STORE hot path.

Command set encode/decode of a C-STORE-RQ and -RSP, fragmentation of a 512 KiB data set
into 128 KiB P-DATA-TF PDUs, reassembly of the same PDUs as received, and Status creation.

Run: ``pytest -q bench --benchmark-only``. Nothing here asserts a timing; the assertions
only check that each benchmark did the work it claims.
"""

from __future__ import annotations

import pytest

from dicomwire.dimse.commands import (
    CommandField,
    DataSetType,
    Tag,
    decode_command,
    encode_command,
)
from dicomwire.dimse.messages import (
    CommandComplete,
    DataSetFragment,
    MessageAssembler,
    fragment_message,
)
from dicomwire.dimse.status import Status
from dicomwire.ul.pdu import PDataTF, decode

KiB = 1 << 10
PDU_LENGTH = 128 * KiB
DATASET_LENGTH = 512 * KiB
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE_UID = "2.25.1234567890.123456789012345678901234567890123456789012"

C_STORE_RQ = {
    Tag.CommandField: CommandField.C_STORE_RQ,
    Tag.MessageID: 7,
    Tag.Priority: 0,
    Tag.CommandDataSetType: DataSetType.PRESENT,
    Tag.AffectedSOPClassUID: CT_IMAGE_STORAGE,
    Tag.AffectedSOPInstanceUID: INSTANCE_UID,
}
C_STORE_RSP = {
    Tag.CommandField: CommandField.C_STORE_RSP,
    Tag.MessageIDBeingRespondedTo: 7,
    Tag.CommandDataSetType: DataSetType.ABSENT,
    Tag.Status: 0x0000,
    Tag.AffectedSOPClassUID: CT_IMAGE_STORAGE,
    Tag.AffectedSOPInstanceUID: INSTANCE_UID,
}
DATASET = bytes(i & 0xFF for i in range(DATASET_LENGTH))
# 6 bytes of PDV header per fragment: 512 KiB of data needs five 128 KiB PDUs
EXPECTED_PDUS = -(-DATASET_LENGTH // (PDU_LENGTH - 6)) + 1  # plus the command's PDU


# --------------------------------------------------------------------------- command sets


@pytest.mark.benchmark(group="command set c-store-rq")
def test_encode_c_store_rq(benchmark) -> None:  # type: ignore[no-untyped-def]
    raw = benchmark(encode_command, C_STORE_RQ)
    assert decode_command(raw)[Tag.AffectedSOPInstanceUID] == INSTANCE_UID


@pytest.mark.benchmark(group="command set c-store-rq")
def test_decode_c_store_rq(benchmark) -> None:  # type: ignore[no-untyped-def]
    raw = encode_command(C_STORE_RQ)
    command = benchmark(decode_command, raw)
    assert command[Tag.CommandField] == CommandField.C_STORE_RQ
    assert command[Tag.AffectedSOPInstanceUID] == INSTANCE_UID


@pytest.mark.benchmark(group="command set c-store-rsp")
def test_encode_c_store_rsp(benchmark) -> None:  # type: ignore[no-untyped-def]
    raw = benchmark(encode_command, C_STORE_RSP)
    assert decode_command(raw)[Tag.Status] == 0


@pytest.mark.benchmark(group="command set c-store-rsp")
def test_decode_c_store_rsp(benchmark) -> None:  # type: ignore[no-untyped-def]
    raw = encode_command(C_STORE_RSP)
    command = benchmark(decode_command, raw)
    assert command[Tag.MessageIDBeingRespondedTo] == 7


# --------------------------------------------------------------------------- fragmentation


def fragment(command: bytes) -> list[PDataTF]:
    return list(fragment_message(1, command, DATASET, PDU_LENGTH))


def received_pdus() -> list[PDataTF]:
    """The PDUs of one C-STORE-RQ as the framer hands them over: decoded from bytes."""
    pdus = fragment(encode_command(C_STORE_RQ))
    return [decode(bytearray(pdu.encode())) for pdu in pdus]  # type: ignore[misc]


@pytest.mark.benchmark(group="c-store-rq 512KiB data set, 128KiB PDUs")
def test_fragment_message(benchmark) -> None:  # type: ignore[no-untyped-def]
    command = encode_command(C_STORE_RQ)
    pdus = benchmark(fragment, command)
    assert len(pdus) <= EXPECTED_PDUS
    data = sum(len(pdv.data) for pdu in pdus for pdv in pdu.pdvs)
    assert data == len(command) + DATASET_LENGTH
    assert all(len(pdu.encode()) <= PDU_LENGTH + 6 for pdu in pdus)


def assemble(pdus: list[PDataTF]) -> int:
    assembler = MessageAssembler()
    received = 0
    for pdu in pdus:
        for event in assembler.feed(pdu):
            if isinstance(event, DataSetFragment):
                received += len(event.data)
            else:
                assert isinstance(event, CommandComplete)
    return received


@pytest.mark.benchmark(group="c-store-rq 512KiB data set, 128KiB PDUs")
def test_message_assembler_feed(benchmark) -> None:  # type: ignore[no-untyped-def]
    pdus = received_pdus()
    assert all(isinstance(pdu, PDataTF) for pdu in pdus)
    assert benchmark(assemble, pdus) == DATASET_LENGTH


# --------------------------------------------------------------------------- status


@pytest.mark.benchmark(group="status")
@pytest.mark.parametrize("code", [0x0000, 0xA700, 0xB000, 0xFF00])
def test_status_create(benchmark, code: int) -> None:  # type: ignore[no-untyped-def]
    status = benchmark(Status, code)
    assert status == code


@pytest.mark.benchmark(group="status")
def test_status_create_and_classify(benchmark) -> None:  # type: ignore[no-untyped-def]
    def classify() -> tuple[bool, bool]:
        status = Status(0xA700)
        return status.is_success, status.is_failure

    assert benchmark(classify) == (False, True)

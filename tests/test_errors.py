"""The exception family: one module, local/remote split, structured fields (issue 12, item 7)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import dicomwire.errors as errors
from dicomwire.errors import (
    AssociationRejected,
    DataSetError,
    DicomWireError,
    DimseStatusError,
    LocalProtocolError,
    NoAcceptedContextError,
    Part10Error,
    RemoteProtocolError,
)
from dicomwire.services.part10 import read_file_info


def test_every_exception_class_of_src_is_defined_in_the_errors_module() -> None:
    root = Path(errors.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" or "testing" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("class ") and ("Error" in line.split("(")[0] or "Exception" in line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line}")
    assert offenders == []


def test_local_and_remote_are_disjoint() -> None:
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, DicomWireError):
            both = issubclass(cls, LocalProtocolError) and issubclass(cls, RemoteProtocolError)
            assert not both, cls
    assert issubclass(errors.PDUError, RemoteProtocolError)
    assert issubclass(errors.DimseProtocolError, RemoteProtocolError)
    assert issubclass(errors.ValidationError, LocalProtocolError)
    assert issubclass(errors.AssociationStateError, LocalProtocolError)


def test_rejection_permanence_follows_the_result() -> None:
    assert AssociationRejected(1, 1, 7).permanent
    transient = AssociationRejected(2, 3, 2)
    assert not transient.permanent
    assert (transient.result, transient.source, transient.reason) == (2, 3, 2)


def test_status_error_fields() -> None:
    error = DimseStatusError(0xA900, "mismatch")
    assert error.status == 0xA900 and error.status.is_failure
    assert error.comment == "mismatch" and error.permanent
    assert not DimseStatusError(0xA700).permanent  # out of resources may pass
    assert DataSetError("x").status == 0xC000


def test_part10_reason_codes(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello" * 40)
    with pytest.raises(Part10Error) as caught:
        read_file_info(text)
    assert caught.value.reason == "not-dicom" and caught.value.permanent
    with pytest.raises(Part10Error) as caught:
        read_file_info(tmp_path / "missing.dcm")
    assert caught.value.reason == "unreadable"


def test_no_accepted_context_carries_the_syntaxes() -> None:
    error = NoAcceptedContextError("none", "1.2.3", "1.2.840.10008.1.2")
    assert (error.abstract_syntax, error.transfer_syntax) == ("1.2.3", "1.2.840.10008.1.2")
    assert error.reason == "no-accepted-context" and error.permanent

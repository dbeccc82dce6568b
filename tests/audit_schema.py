"""PS3.15 A.5.1: validate DICOM audit messages against the schema (tests/data, RELAX NG).

The standard publishes the schema in RELAX NG Compact syntax; tests/data/
dicom-audit-message.rng is its transcription in RELAX NG XML syntax, which lxml reads.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

from lxml import etree

SCHEMA = Path(__file__).parent / "data" / "dicom-audit-message.rng"


@functools.cache
def _schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def validate(message: bytes | str | ET.Element) -> None:
    """AssertionError naming what is wrong unless ``message`` is valid per A.5.1."""
    if isinstance(message, ET.Element):
        message = ET.tostring(message)
    if isinstance(message, str):
        message = message.encode("utf-8")
    document = etree.fromstring(message)
    schema = _schema()
    if not schema.validate(document):
        raise AssertionError(f"not a PS3.15 A.5.1 audit message: {schema.error_log}\n{message!r}")


def local_messages(path: Path) -> list[ET.Element]:
    """The audit messages of a local audit file (one RFC 5424 message a line), validated."""
    found = []
    for line in path.read_bytes().splitlines():
        xml = line.split(b" - ", 1)[1].removeprefix(b"\xef\xbb\xbf")
        validate(xml)
        found.append(ET.fromstring(xml))
    return found

"""The C-FIND/C-GET/C-MOVE and N-service primitives are built on first use (start-up).

:mod:`dicomwire.dimse.primitives` defines the C-ECHO, C-STORE and C-CANCEL classes and
imports :mod:`dicomwire.dimse.other_primitives` only when one of its names is used or a
command of theirs is parsed or answered. Each case runs in a fresh interpreter, where
nothing has imported that module yet, and shows the module was imported by that use.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SETUP = """
import sys
from dicomwire.dimse import primitives
from dicomwire.dimse.commands import TAG_AFFECTED_SOP_CLASS, TAG_COMMAND_FIELD, TAG_MESSAGE_ID
assert "dicomwire.dimse.other_primitives" not in sys.modules
"""

CASES = {
    "parse of a C-FIND-RQ": (
        "message = primitives.parse({TAG_COMMAND_FIELD: 0x0020, TAG_MESSAGE_ID: 7,"
        " TAG_AFFECTED_SOP_CLASS: '1.2.840.10008.5.1.4.1.2.1.1'})\n"
        "assert type(message).__name__ == 'CFindRQ' and message.message_id == 7"
    ),
    "the answer to an N-ACTION-RQ": (
        "command = primitives.response_command({TAG_COMMAND_FIELD: 0x0130, TAG_MESSAGE_ID: 3,"
        " 0x00001008: 1}, 0, False)\n"
        "assert command[TAG_COMMAND_FIELD] == 0x8130 and command[0x00001008] == 1"
    ),
    "a name imported from primitives": (
        "from dicomwire.dimse.primitives import NEventReportRQ\n"
        "assert NEventReportRQ('1.2', '1.2.3', 1).response().event_type_id == 1"
    ),
    "the tables of every class": (
        "assert len(primitives.REQUEST_CLASSES) == 12 and len(primitives.RESPONSE_CLASSES) == 11"
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_other_primitives_load_on_first_use(case: str) -> None:
    script = SETUP + CASES[case] + "\nassert 'dicomwire.dimse.other_primitives' in sys.modules\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_unknown_command_field_is_still_an_error_after_loading() -> None:
    script = SETUP + (
        "from dicomwire.errors import CommandError\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        primitives.parse({TAG_COMMAND_FIELD: 0x0ABC})\n"
        "    except CommandError as error:\n"
        "        assert '0x0ABC' in str(error)\n"
        "    else:\n"
        "        raise AssertionError('no error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr

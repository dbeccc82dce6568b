"""AE titles and UIDs as the Upper Layer carries them.

- AE titles: PS3.5 §6.2 (VR AE) and PS3.8 §9.3.2: 16 bytes on the wire, characters of the
  default repertoire without backslash or control characters, leading and trailing spaces
  not significant, a value of only spaces is invalid.
- UIDs: PS3.5 §9.1 and PS3.8 Annex F: at most 64 characters, digits and dots, no empty
  component and no leading zero in a component, no padding on the wire.

Validation is for values the application supplies. Values read off the wire are kept
exactly as received (see :class:`WireStr`) so research tools can see and echo them.
"""

from __future__ import annotations

import re

from ..errors import ValidationError

AE_TITLE_LENGTH = 16
UID_MAX_LENGTH = 64

_UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


class WireStr(str):
    """A string decoded from the wire that remembers its exact bytes.

    The PDU codec re-encodes a ``WireStr`` from :attr:`wire` without validating it, so
    ``decode(x).encode() == x`` holds even for padded or non-conforming values. It
    compares equal to the plain text, so applications use it as an ordinary ``str``. It
    is also the escape hatch for sending a deliberately invalid value:
    ``WireStr.from_wire(b"1.02.3")``.
    """

    wire: bytes

    @classmethod
    def from_wire(cls, raw: bytes, text: str | None = None) -> WireStr:
        """Wrap ``raw`` bytes; ``text`` is the value as the application sees it."""
        value = cls(raw.decode("latin-1") if text is None else text)
        value.wire = bytes(raw)
        return value


def normalize_ae_title(value: str) -> str:
    """Return the significant part of an AE title: leading and trailing spaces removed."""
    return value.strip(" ")


def validate_ae_title(value: str) -> str:
    """Check an AE title the application supplies; return it without insignificant spaces.

    Raises :class:`~dicomwire.ValidationError` naming what is wrong.
    """
    if not isinstance(value, str):
        raise ValidationError(f"AE title must be a str, not {type(value).__name__}")
    stripped = normalize_ae_title(value)
    if not stripped:
        raise ValidationError(f"AE title {value!r} is empty or all spaces")
    if len(stripped) > AE_TITLE_LENGTH:
        raise ValidationError(
            f"AE title {value!r} has {len(stripped)} significant characters; at most 16"
        )
    for position, char in enumerate(stripped):
        if char == "\\" or not (" " <= char <= "~"):
            raise ValidationError(
                f"AE title {value!r} has {char!r} at position {position}: only the default "
                "character repertoire without backslash or control characters is allowed"
            )
    return stripped


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is a well-formed UID (PS3.5 §9.1)."""
    return len(value) <= UID_MAX_LENGTH and _UID_PATTERN.fullmatch(value) is not None


def validate_uid(value: str, what: str = "UID") -> str:
    """Check a UID the application supplies and return it unchanged."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > UID_MAX_LENGTH:
        raise ValidationError(f"{what} {value!r} has {len(value)} characters; at most 64")
    if _UID_PATTERN.fullmatch(value) is None:
        raise ValidationError(
            f"{what} {value!r} is not a UID: components of digits separated by dots, "
            "none empty, none with a leading zero"
        )
    return value


def decode_uid(raw: bytes) -> WireStr:
    """Read a UID leniently: trailing NUL (and space) padding removed, bytes kept."""
    return WireStr.from_wire(raw, raw.rstrip(b"\x00 ").decode("latin-1"))


def decode_ae_title(raw: bytes) -> WireStr:
    """Read a 16-byte AE title field leniently: spaces and NUL padding removed, bytes kept."""
    return WireStr.from_wire(raw, normalize_ae_title(raw.rstrip(b"\x00").decode("latin-1")))


def encode_uid(value: str, what: str = "UID") -> bytes:
    """Bytes of a UID for the wire: a :class:`WireStr` as received, else validated."""
    if isinstance(value, WireStr):
        return value.wire
    return validate_uid(value, what).encode("ascii")


def encode_ae_title(value: str) -> bytes:
    """The 16-byte field of an AE title: a :class:`WireStr` as received, else validated."""
    if isinstance(value, WireStr):
        if len(value.wire) > AE_TITLE_LENGTH:
            raise ValidationError(f"AE title field {value.wire!r} is longer than 16 bytes")
        return value.wire.ljust(AE_TITLE_LENGTH, b" ")
    return validate_ae_title(value).encode("ascii").ljust(AE_TITLE_LENGTH, b" ")

"""What the Storage service class covers: its SOP classes (PS3.4 Table B.5-1) and the
transfer syntaxes (PS3.5 Annex A) the SCP offers and the SCU proposes."""

from __future__ import annotations

import functools

from ...uids import UNCOMPRESSED_TRANSFER_SYNTAXES

__all__ = [
    "COMPRESSED_TRANSFER_SYNTAXES",
    "STORAGE_TRANSFER_SYNTAXES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "storage_sop_classes",
]

#: JPEG baseline/extended/lossless/SV1, JPEG-LS, JPEG 2000, HTJ2K, RLE (PS3.5 Annex A).
COMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",
)
#: The SCP's default transfer syntax preference order (DCMTK's: uncompressed first).
STORAGE_TRANSFER_SYNTAXES = UNCOMPRESSED_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES


@functools.cache
def storage_sop_classes() -> dict[str, str]:
    """Every storage SOP class pydicom knows (PS3.4 Table B.5-1), UID -> name."""
    from pydicom._uid_dict import UID_dictionary

    return {
        uid: entry[0]
        for uid, entry in UID_dictionary.items()
        if entry[1] == "SOP Class"
        and "Storage" in entry[0]
        and "Commitment" not in entry[0]
        and uid != "1.2.840.10008.1.3.10"  # Media Storage Directory: a DICOMDIR, not sent
    }

"""The DICOM Upper Layer (PS3.8): PDU codec, framing, the association state machine."""

from .framer import PDUFramer
from .pdu import PDUError, decode

__all__ = ["PDUError", "PDUFramer", "decode"]

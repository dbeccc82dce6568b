"""Incremental PDU framing of a TCP byte stream (PS3.8 §9.3.1: type, reserved, 32-bit length).

The framer takes bytes in arbitrary chunks and yields whole decoded PDUs. Two ways in:

- :meth:`PDUFramer.feed` for chunks the caller already holds (each byte copied once into the
  PDU's own buffer);
- :meth:`PDUFramer.get_buffer` / :meth:`PDUFramer.buffer_updated`, the shape of
  :class:`asyncio.BufferedProtocol`: while the body of a large PDU is being received the
  socket reads straight into that PDU's buffer, so its payload is never copied at all.

Every PDU gets a buffer of its own, so the memoryviews that P-DATA-TF values hold stay
valid after the framer moves on. A PDU length above the receiver's limit is rejected from
the 6-byte header, before anything is allocated.
"""

from __future__ import annotations

from .pdu import PDU, PDU_HEADER_LENGTH, PDUError, PDUType, decode, decode_p_data, peek_header

__all__ = ["DEFAULT_MAX_CONTROL_PDU_LENGTH", "PDUFramer"]

#: Bound on PDUs other than P-DATA-TF (A-ASSOCIATE with many contexts or a user identity
#: token is the largest legitimate one, a few hundred KiB at most).
DEFAULT_MAX_CONTROL_PDU_LENGTH = 1 << 20
#: Largest body allocated at once for a length only the peer vouches for (any control PDU,
#: or P-DATA-TF with no maximum); larger ones grow as their bytes actually arrive, so six
#: bytes of header cannot make us allocate a megabyte.
_PREALLOCATE_UNTRUSTED = 64 << 10
#: Read straight into a PDU's buffer when at least this much of it is still missing.
_DIRECT_READ_THRESHOLD = 4 << 10
_STAGING_SIZE = 16 << 10
#: P-DATA-TF PDUs from this size up are received into reusable buffers.
_POOLED_MINIMUM = 32 << 10
_POOL_BUFFERS = 16


def _unexported(buffer: bytearray) -> bool:
    """True when no memoryview of ``buffer`` is alive (it can be resized)."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    del buffer[-1]
    return True


class PDUFramer:
    """Cut a byte stream into PDUs.

    ``max_pdu_length`` bounds the length field of P-DATA-TF PDUs: it is the Maximum Length
    this side announced (PS3.8 D.1); 0 means unlimited. ``max_control_pdu_length`` bounds
    every other PDU.

    A :class:`PDUError` is raised by the call that meets the bad bytes, unless that call
    already completed PDUs before them: then those PDUs are returned (events keep their
    order of arrival) and the error waits in :attr:`deferred_error`. After an error the
    stream cannot be resynchronised: every later call raises it again, but
    :meth:`get_buffer` still hands out a buffer so a transport can keep reading.
    """

    __slots__ = (
        "_body",
        "_body_filled",
        "_body_length",
        "_body_view",
        "_direct",
        "_failed",
        "_header",
        "_header_filled",
        "_pool",
        "_staging",
        "_staging_view",
        "deferred_error",
        "max_control_pdu_length",
        "max_pdu_length",
    )

    def __init__(
        self,
        max_pdu_length: int = 0,
        max_control_pdu_length: int = DEFAULT_MAX_CONTROL_PDU_LENGTH,
    ) -> None:
        self.max_pdu_length = max_pdu_length
        self.max_control_pdu_length = max_control_pdu_length
        self._header = bytearray(PDU_HEADER_LENGTH)
        self._header_filled = 0
        self._body: bytearray | None = None
        self._body_view: memoryview | None = None
        self._body_length = 0  # total bytes of the PDU in progress, header included
        self._body_filled = 0
        self._staging = bytearray(_STAGING_SIZE)
        self._staging_view = memoryview(self._staging)
        self._direct = False
        self._failed: PDUError | None = None
        self._pool: list[bytearray] = []
        #: An error met after PDUs were completed in the same call; the caller reports it.
        self.deferred_error: PDUError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete PDU held; 0 means the stream is at a PDU boundary."""
        return self._body_filled if self._body is not None else self._header_filled

    # -- asyncio.BufferedProtocol shape ------------------------------------------------

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A buffer to receive into; pass the count received to :meth:`buffer_updated`."""
        view = self._body_view
        if self._failed is not None:
            self._direct = False
            return self._staging_view
        if view is not None and self._body_length - self._body_filled >= _DIRECT_READ_THRESHOLD:
            self._direct = True
            return view[self._body_filled : self._body_length]
        self._direct = False
        return self._staging_view

    def buffer_updated(self, nbytes: int) -> list[PDU]:
        """Account for ``nbytes`` received into the last :meth:`get_buffer` buffer."""
        if self._failed is not None:
            raise self._failed
        if self._direct:
            self._direct = False
            self._body_filled += nbytes
            if self._body_filled == self._body_length:
                return [self._finish()]
            return []
        return self.feed(self._staging_view[:nbytes])

    # -- plain chunks ----------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[PDU]:
        """Consume a chunk of the stream; return the PDUs it completes, in order."""
        if self._failed is not None:
            raise self._failed
        view = memoryview(data)
        pdus: list[PDU] = []
        pos, end = 0, len(view)
        try:
            while pos < end:
                if self._body is None:
                    if not self._header_filled and end - pos >= PDU_HEADER_LENGTH:
                        # A PDU starts here (most reads): when all of it is in this chunk
                        # and it is small, one copy of it is its buffer (none zeroed first).
                        pdu_type, length = peek_header(view[pos : pos + PDU_HEADER_LENGTH])
                        total = PDU_HEADER_LENGTH + length
                        if total <= end - pos and total < _POOLED_MINIMUM:
                            self._check_length(pdu_type, length)
                            whole = bytes(view[pos : pos + total])
                            pdus.append(_decode_checked(whole, memoryview(whole)))
                            pos += total
                            continue
                    take = min(PDU_HEADER_LENGTH - self._header_filled, end - pos)
                    filled = self._header_filled
                    self._header[filled : filled + take] = view[pos : pos + take]
                    self._header_filled = filled + take
                    pos += take
                    if self._header_filled == PDU_HEADER_LENGTH:
                        self._start_body()
                        if self._body_filled == self._body_length:
                            pdus.append(self._finish())
                    continue
                if self._body_view is not None:
                    take = min(self._body_length - self._body_filled, end - pos)
                    filled = self._body_filled
                    self._body_view[filled : filled + take] = view[pos : pos + take]
                else:  # growing body of a PDU no limit vouches for
                    take = min(self._body_length - self._body_filled, end - pos)
                    self._body.extend(view[pos : pos + take])
                self._body_filled += take
                pos += take
                if self._body_filled == self._body_length:
                    pdus.append(self._finish())
        except PDUError as exc:
            self._failed = exc
            if pdus:
                self.deferred_error = exc
                return pdus
            raise
        return pdus

    # -- internals -----------------------------------------------------------------------

    def _check_length(self, pdu_type: int, length: int) -> int:
        """The limit that applies to the PDU's length; raise when it is above it."""
        if pdu_type == PDUType.P_DATA_TF:
            limit = self.max_pdu_length
            if limit and length > limit:
                raise PDUError(
                    f"P-DATA-TF length {length} exceeds the maximum length {limit} "
                    "announced to the peer",
                    2,
                )
        else:
            limit = self.max_control_pdu_length
            if length > limit:
                raise PDUError(
                    f"{PDUType(pdu_type).name.replace('_', '-')} length {length} exceeds "
                    f"the receiver's limit of {limit} bytes",
                    2,
                )
        return limit

    def _start_body(self) -> None:
        pdu_type, length = peek_header(self._header)
        limit = self._check_length(pdu_type, length)
        total = PDU_HEADER_LENGTH + length
        self._body_length = total
        self._body_filled = PDU_HEADER_LENGTH
        if pdu_type == PDUType.P_DATA_TF and total >= _POOLED_MINIMUM and limit:
            body = self._pooled_buffer(total)
            view = memoryview(body)[:total]
            view[:PDU_HEADER_LENGTH] = self._header
            self._body = body
            self._body_view = view
        elif (pdu_type == PDUType.P_DATA_TF and limit) or length <= _PREALLOCATE_UNTRUSTED:
            body = bytearray(total)
            body[:PDU_HEADER_LENGTH] = self._header
            self._body = body
            self._body_view = memoryview(body)
        else:
            self._body = bytearray(self._header)
            self._body_view = None

    def _pooled_buffer(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes that nothing looks into any more.

        A fresh large bytearray costs a page fault per 4 KiB on first write; reusing one
        whose PDU has been consumed avoids that. "Consumed" means no memoryview of it is
        alive (a PDV's data, a transport's read buffer): such a view is an export, and an
        exported bytearray refuses to change size.
        """
        for buffer in self._pool:
            if len(buffer) >= size and _unexported(buffer):
                return buffer
        buffer = bytearray(size)
        if len(self._pool) < _POOL_BUFFERS:
            self._pool.append(buffer)
        return buffer

    def _finish(self) -> PDU:
        body = self._body
        view = self._body_view
        assert body is not None
        self._body = None
        self._body_view = None
        self._header_filled = 0
        self._body_filled = 0
        try:
            return _decode_checked(body, view)
        except PDUError as exc:
            self._failed = exc
            raise


def _decode_checked(body: bytes | bytearray, view: memoryview | None) -> PDU:
    """A whole PDU whose header's type and length were checked: of a P-DATA-TF held in
    ``view`` (exactly its bytes), only the items are left to read."""
    if view is not None and body[0] == PDUType.P_DATA_TF:
        return decode_p_data(view, body[1])
    return decode(body)

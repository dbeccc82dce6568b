"""TLS over an asyncio transport with :class:`ssl.MemoryBIO` (PS3.15 Annex B secure transport).

The handshake and record layer run inside the protocol, not in the event loop's TLS
machinery, for three reasons: a failed handshake must be reported once with the peer's
address and reason (the loops stay silent about it); the association must never see a
byte before the handshake completes (uvloop does not honour ``pause_reading()`` inside
``connection_made``); and the same code runs on asyncio and uvloop.

:class:`TLSSession` holds the TLS state of one connection; :class:`TLSTransport` is what
the association writes to once the handshake is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from .tls import diagnose_tls_error

__all__ = ["TLSSession", "TLSTransport"]

log = logging.getLogger("dicomwire.ul.tls")

_READ_SIZE = 1 << 16
#: Seconds an acceptor waits for the peer to close after a failed handshake.
_LINGER = 2.0


class TLSTransport(asyncio.Transport):
    """The plaintext side of a TLS connection: writes are encrypted onto the raw transport."""

    def __init__(self, session: TLSSession) -> None:
        super().__init__()
        self._session = session
        self._raw = session.raw

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._session.encrypt(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        parts = list(list_of_data)
        if sum(len(part) for part in parts) <= 1 << 16:
            self._session.encrypt(b"".join(parts))  # few records for many small parts
            return
        for data in parts:
            self._session.encrypt(data)

    def close(self) -> None:
        self._session.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self._session.sslobj
        if name == "peercert":
            return sslobj.getpeercert()
        if name == "cipher":
            return sslobj.cipher()
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return self._session.context
        return self._raw.get_extra_info(name, default)


class TLSSession:
    """TLS state of one connection: feed it ciphertext, it returns plaintext.

    ``on_ready(transport)`` runs once the handshake succeeds; ``on_failed(error)`` once if
    it fails. An acceptor logs each failure once, with the peer's address and reason; a
    requestor only at debug level, as its caller gets the error (see
    :func:`~dicomwire.ul.tls.tls_failure`). :attr:`received` keeps the first bytes the peer
    sent during the handshake (a DICOM PDU there: the peer does not speak TLS), and
    :attr:`error` the alert or error that ended an established connection.
    """

    def __init__(
        self,
        raw: asyncio.Transport,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float,
        on_ready: Callable[[TLSTransport], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        self.raw = raw
        self.context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.established = False
        self.failed = False
        self.server_side = server_side
        self.received = b""
        self.error: ssl.SSLError | None = None
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._peer = raw.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            handshake_timeout, self._timed_out
        )
        if not server_side:
            self._handshake()  # the ClientHello

    # -- handshake ----------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            self._flush()  # the alert, if any
            self._fail(exc)
            return
        self._flush()
        self.established = True
        self._cancel_timer()
        log.debug("TLS with %s: %s, %s", self._peer, self.sslobj.version(), self.sslobj.cipher())
        self._on_ready(TLSTransport(self))

    def _timed_out(self) -> None:
        self._timer = None
        if not self.established and not self.failed:
            self._fail(TimeoutError("handshake timed out"))

    def _fail(self, error: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        self._cancel_timer()
        failure = diagnose_tls_error(error, server_side=self.server_side, received=self.received)
        level = logging.WARNING if self.server_side else logging.DEBUG
        log.log(level, "TLS handshake with %s failed: %s", self._peer, failure.text)
        if self.server_side:
            self._close_after_alert()
        else:
            self.raw.close()
        self._on_failed(error)

    def _close_after_alert(self) -> None:
        """Send our alert and a FIN, then close when the peer does (or after a while).

        A TLS 1.3 client sends its A-ASSOCIATE-RQ right after its Finished: closing with
        those bytes unread would reset the connection, and the client could lose the alert
        that says why (e.g. certificate_required) before reading it.
        """
        raw = self.raw
        if raw.is_closing() or not raw.can_write_eof():
            raw.close()
            return
        raw.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_LINGER, raw.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self) -> None:
        """The raw connection closed; a handshake still running has failed."""
        self._cancel_timer()
        if not self.established and not self.failed:
            self._fail(ConnectionResetError("connection closed during the handshake"))

    # -- records --------------------------------------------------------------------------

    def decrypt(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take ciphertext from the socket; return the plaintext it completes."""
        if self.failed:
            return []
        self._incoming.write(data)
        if not self.established:
            if not self.received:
                self.received = bytes(data[:8])
            self._handshake()
            if not self.established:
                return []
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.sslobj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify: the peer is done
                self.raw.close()
                break
            except ssl.SSLError as exc:  # e.g. TLS 1.3: the server refused our certificate
                self.error = exc
                failure = diagnose_tls_error(exc, server_side=self.server_side)
                level = logging.WARNING if self.server_side else logging.DEBUG
                log.log(level, "TLS error from %s: %s", self._peer, failure.text)
                self.raw.abort()
                break
            if not chunk:  # the peer's close_notify (read returns b"" for it)
                self.raw.close()
                break
            chunks.append(chunk)
        self._flush()  # e.g. TLS 1.3 session tickets or key updates
        return chunks

    def encrypt(self, data: bytes | bytearray | memoryview) -> None:
        if self.raw.is_closing():
            return
        try:
            self.sslobj.write(data)
        except ssl.SSLError as exc:
            failure = diagnose_tls_error(exc, server_side=self.server_side)
            log.warning("TLS write to %s failed: %s", self._peer, failure.text)
            self.raw.abort()
            return
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and not self.raw.is_closing():
            self.raw.write(pending)

    def close(self) -> None:
        """Send close_notify, then close the connection."""
        if self.established and not self.raw.is_closing():
            with contextlib.suppress(ssl.SSLError):
                self.sslobj.unwrap()
            self._flush()
        self.raw.close()

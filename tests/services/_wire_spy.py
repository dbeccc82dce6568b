"""What this process's sockets put on the wire, decoded here from PS3.8 and PS3.7 alone.

:class:`WireSpy` wraps ``socket.socket.send``/``sendall``/``sendmsg`` process-wide (with
pytest's monkeypatch), so it sees every PDU a node or a requestor in the test process sends,
whatever module sends it. It reassembles each socket's byte stream into PDUs (PS3.8 §9.3):

- A-ASSOCIATE-AC (type 0x02): the Implementation Class UID (sub-item 0x52) and
  Implementation Version Name (0x55) of its User Information item (PS3.7 Annex D.3.3.2);
- P-DATA-TF (type 0x04): command fragments (message control header bit 0) joined into
  command sets, decoded as Implicit VR Little Endian (PS3.7 §6.3.1); every C-STORE-RSP
  (Command Field 0x8001) is recorded with its Status (0000,0900) and Error Comment
  (0000,0902), and appended to ``events`` as ``("C-STORE-RSP", status)`` the moment the
  kernel took its bytes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

C_STORE_RSP = 0x8001


@dataclass
class StoreResponse:
    status: int
    error_comment: bytes | None


@dataclass
class AssociateAccept:
    implementation_class_uid: bytes
    implementation_version_name: bytes | None


def _sub_items(data: bytes) -> dict[int, bytes]:
    """Items of the A-ASSOCIATE variable part: type (1), reserved (1), length (2, BE)."""
    items: dict[int, bytes] = {}
    position = 0
    while position + 4 <= len(data):
        kind = data[position]
        (length,) = struct.unpack_from(">H", data, position + 2)
        items.setdefault(kind, data[position + 4 : position + 4 + length])
        position += 4 + length
    return items


def _command_elements(command: bytes) -> dict[tuple[int, int], bytes]:
    """Implicit VR Little Endian elements: group, element, 32-bit length, value."""
    elements = {}
    position = 0
    while position + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHL", command, position)
        elements[(group, element)] = command[position + 8 : position + 8 + length]
        position += 8 + length
    return elements


@dataclass
class WireSpy:
    """Every A-ASSOCIATE-AC and C-STORE-RSP this process sent, in order."""

    #: Shared with other spies of a test: ("C-STORE-RSP", status) is appended here.
    events: list[tuple[Any, ...]] = field(default_factory=list)
    accepts: list[AssociateAccept] = field(default_factory=list)
    responses: list[StoreResponse] = field(default_factory=list)
    _streams: dict[int, bytearray] = field(default_factory=dict)
    _commands: dict[int, bytearray] = field(default_factory=dict)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> WireSpy:
        send = socket.socket.send
        sendall = socket.socket.sendall
        sendmsg = socket.socket.sendmsg

        def spy_send(sock: socket.socket, data: Any, *args: Any) -> int:
            sent: int = send(sock, data, *args)
            self._saw(sock, bytes(memoryview(data)[:sent]))
            return sent

        def spy_sendall(sock: socket.socket, data: Any, *args: Any) -> None:
            sendall(sock, data, *args)
            self._saw(sock, bytes(data))

        def spy_sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
            buffers = list(buffers)
            sent: int = sendmsg(sock, buffers, *args)
            self._saw(sock, b"".join(bytes(b) for b in buffers)[:sent])
            return sent

        spies: dict[str, Callable[..., Any]] = {
            "send": spy_send,
            "sendall": spy_sendall,
            "sendmsg": spy_sendmsg,
        }
        for name, spy in spies.items():
            monkeypatch.setattr(socket.socket, name, spy)
        return self

    def _saw(self, sock: socket.socket, data: bytes) -> None:
        key = id(sock)
        stream = self._streams.setdefault(key, bytearray())
        stream += data
        while len(stream) >= 6:
            (length,) = struct.unpack_from(">L", stream, 2)
            if len(stream) < 6 + length:
                break
            pdu_type, body = stream[0], bytes(stream[6 : 6 + length])
            del stream[: 6 + length]
            if pdu_type == 0x02:
                self._accept(body)
            elif pdu_type == 0x04:
                self._data(key, body)

    def _accept(self, body: bytes) -> None:
        # Protocol version (2), reserved (2), called/calling AE (16 + 16), reserved (32).
        user = _sub_items(body[68:]).get(0x50, b"")
        sub = _sub_items(user)
        self.accepts.append(AssociateAccept(sub.get(0x52, b""), sub.get(0x55)))

    def _data(self, key: int, body: bytes) -> None:
        position = 0
        while position + 6 <= len(body):
            (length,) = struct.unpack_from(">L", body, position)
            control = body[position + 5]
            fragment = body[position + 6 : position + 4 + length]
            position += 4 + length
            if not control & 0x01:
                continue  # a data set fragment
            command = self._commands.setdefault(key, bytearray())
            command += fragment
            if control & 0x02:
                del self._commands[key]
                self._command(bytes(command))

    def _command(self, command: bytes) -> None:
        elements = _command_elements(command)
        field_value = elements.get((0x0000, 0x0100), b"")
        if len(field_value) != 2 or struct.unpack("<H", field_value)[0] != C_STORE_RSP:
            return
        (status,) = struct.unpack("<H", elements[(0x0000, 0x0900)])
        self.responses.append(StoreResponse(status, elements.get((0x0000, 0x0902))))
        self.events.append(("C-STORE-RSP", status))

"""The PDU codec of the DICOM Upper Layer: PS3.8 §9.3 (PDU structure) and Annex D (user info).

All seven PDUs with every item and sub-item:

- A-ASSOCIATE-RQ / -AC (§9.3.2, §9.3.3): application context (10H), presentation context
  RQ (20H) / AC (21H) with abstract syntax (30H) and transfer syntax (40H) sub-items, user
  information (50H) with maximum length (51H, PS3.8 D.1), implementation class UID (52H) and
  version name (55H, PS3.7 D.3.3.2), asynchronous operations window (53H, PS3.7 D.3.3.3),
  SCP/SCU role selection (54H, PS3.7 D.3.3.4), SOP class extended negotiation (56H, PS3.7
  D.3.3.5), SOP class common extended negotiation (57H, PS3.7 D.3.3.6), user identity RQ
  (58H) and AC (59H) (PS3.7 D.3.3.7);
- A-ASSOCIATE-RJ (§9.3.4), P-DATA-TF (§9.3.5, PDVs with the message control header of
  PS3.8 Annex E), A-RELEASE-RQ/-RP (§9.3.6, §9.3.7), A-ABORT (§9.3.8).

Fidelity: ``decode(x).encode() == x`` for every well-formed PDU. Reserved fields are kept
as received (named ``reserved`` for the byte after an item's type, else ``reserved_N`` by
their byte offset N in the PDU or item); AE titles, UIDs and names read off the wire are
:class:`~dicomwire.ul.identifiers.WireStr` values that remember their exact bytes; unknown
user-information sub-items are kept whole. Containers keep their items in wire order.

Malformed input raises :class:`PDUError` with the byte offset (from the start of the PDU)
where the problem lies; nothing else escapes :func:`decode`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, TypeAlias

from ..errors import PDUError, ValidationError
from ..records import Record
from .identifiers import (
    WireStr,
    decode_ae_title,
    decode_uid,
    encode_ae_title,
    encode_uid,
)

__all__ = [
    "DICOM_APPLICATION_CONTEXT",
    "PDU",
    "AAbort",
    "AAssociateAC",
    "AAssociateRJ",
    "AAssociateRQ",
    "AReleaseRP",
    "AReleaseRQ",
    "AbortReason",
    "AbortSource",
    "AbstractSyntaxItem",
    "ApplicationContextItem",
    "AsynchronousOperationsWindowItem",
    "ImplementationClassUIDItem",
    "ImplementationVersionNameItem",
    "MaximumLengthItem",
    "PDUError",
    "PDUType",
    "PDataTF",
    "PresentationContextACItem",
    "PresentationContextRQItem",
    "PresentationContextResult",
    "PresentationDataValue",
    "ACSERejectReason",
    "PresentationRejectReason",
    "ServiceUserRejectReason",
    "RejectResult",
    "RejectSource",
    "RoleSelectionItem",
    "SOPClassCommonExtendedNegotiationItem",
    "SOPClassExtendedNegotiationItem",
    "TransferSyntaxItem",
    "UnknownItem",
    "UserIdentityACItem",
    "UserIdentityRQItem",
    "UserIdentityType",
    "UserInformationItem",
    "decode",
    "decode_p_data",
]

#: The one application context name of DICOM (PS3.7 Annex A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

_PDU_HEADER = struct.Struct(">BBL")
_ITEM_HEADER = struct.Struct(">BBH")
_ASSOCIATE_FIXED = struct.Struct(">HH16s16s32s")  # version, reserved, called, calling, reserved
_PDV_HEADER = struct.Struct(">LBB")
_FOUR_BYTES = struct.Struct(">BBBB")
_TWO_BYTES = struct.Struct(">BB")
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">L")
_TWO_UINT16 = struct.Struct(">HH")

PDU_HEADER_LENGTH = 6
ITEM_HEADER_LENGTH = 4
PDV_HEADER_LENGTH = 6
_ASSOCIATE_FIXED_LENGTH = _ASSOCIATE_FIXED.size  # 68


class PDUType(IntEnum):
    """PDU types of PS3.8 Table 9-11."""

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


class PresentationContextResult(IntEnum):
    """Result/Reason of a presentation context AC item (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class RejectResult(IntEnum):
    """Result of A-ASSOCIATE-RJ (PS3.8 Table 9-21)."""

    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class RejectSource(IntEnum):
    """Source of A-ASSOCIATE-RJ (PS3.8 Table 9-21)."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class ServiceUserRejectReason(IntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the service-user (PS3.8 Table 9-21)."""

    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7


class ACSERejectReason(IntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the ACSE provider (PS3.8 Table 9-21)."""

    NO_REASON_GIVEN = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class PresentationRejectReason(IntEnum):
    """A-ASSOCIATE-RJ reasons when the source is the presentation provider (Table 9-21)."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


class AbortSource(IntEnum):
    """Source of A-ABORT (PS3.8 Table 9-26)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """Reason/Diag. of A-ABORT when the source is the service provider (PS3.8 Table 9-26)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class UserIdentityType(IntEnum):
    """User identity types of PS3.7 Table D.3-14."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


# --------------------------------------------------------------------------- helpers


def _pack(layout: struct.Struct, what: str, *values: int | bytes) -> bytes:
    """``layout.pack(*values)``, or a ValidationError naming ``what`` when a value does not fit."""
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValidationError(f"{what}: a field does not fit its width ({exc}): {values}") from None


def _item(item_type: int, reserved: int, value: bytes) -> bytes:
    """Frame ``value`` as an item: type, reserved byte, 16-bit length."""
    if len(value) > 0xFFFF:
        raise ValidationError(f"item 0x{item_type:02X} value of {len(value)} bytes exceeds 65535")
    return _pack(_ITEM_HEADER, f"item 0x{item_type:02X}", item_type, reserved, len(value)) + value


def _u16_prefixed(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise ValidationError(f"{what} of {len(value)} bytes exceeds 65535")
    return _UINT16.pack(len(value)) + value


def _text(value: str, what: str, max_length: int | None = None) -> bytes:
    """Bytes of a free-text field: a WireStr as received, else ASCII of the default set."""
    if isinstance(value, WireStr):
        return value.wire
    if not value or any(not (" " <= c <= "~") or c == "\\" for c in value):
        raise ValidationError(f"{what} {value!r} must be non-empty default-repertoire text")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{what} {value!r} is longer than {max_length} characters")
    return value.encode("ascii")


def _read_u16_prefixed(buf: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    """Read a 16-bit length and that many bytes inside ``[pos, end)``."""
    if end - pos < 2:
        raise PDUError(f"{what} length field is truncated", pos)
    (length,) = _UINT16.unpack_from(buf, pos)
    start = pos + 2
    if start + length > end:
        raise PDUError(f"{what} length {length} overruns its item by {start + length - end}", pos)
    return buf[start : start + length], start + length


def _iter_items(
    buf: bytes, start: int, end: int, where: str
) -> Iterator[tuple[int, int, int, int]]:
    """Yield (type, reserved, body start, body end) of each item in ``buf[start:end]``."""
    pos = start
    while pos < end:
        if end - pos < ITEM_HEADER_LENGTH:
            raise PDUError(f"truncated item header in {where}", pos)
        item_type, reserved, length = _ITEM_HEADER.unpack_from(buf, pos)
        body = pos + ITEM_HEADER_LENGTH
        if body + length > end:
            raise PDUError(
                f"item 0x{item_type:02X} length {length} overruns {where} by "
                f"{body + length - end} bytes",
                pos,
            )
        yield item_type, reserved, body, body + length
        pos = body + length


def _expect_length(item: str, actual: int, expected: int, offset: int) -> None:
    if actual != expected:
        raise PDUError(f"{item} has length {actual}; expected {expected}", offset)


# --------------------------------------------------------------------------- simple items


@dataclass(slots=True, repr=False, eq=False)
class ApplicationContextItem(Record):
    """Application context item (10H, PS3.8 §9.3.2.1)."""

    item_type: ClassVar[int] = 0x10
    name: str = DICOM_APPLICATION_CONTEXT
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _item(self.item_type, self.reserved, encode_uid(self.name, "application context"))


@dataclass(slots=True, repr=False, eq=False)
class AbstractSyntaxItem(Record):
    """Abstract syntax sub-item (30H, PS3.8 §9.3.2.2.1)."""

    item_type: ClassVar[int] = 0x30
    name: str
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _item(self.item_type, self.reserved, encode_uid(self.name, "abstract syntax"))


@dataclass(slots=True, repr=False, eq=False)
class TransferSyntaxItem(Record):
    """Transfer syntax sub-item (40H, PS3.8 §9.3.2.2.2, §9.3.3.2.1)."""

    item_type: ClassVar[int] = 0x40
    name: str
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        # An empty name is allowed: acceptors send it with rejected presentation contexts.
        name = self.name
        empty = name == "" and not isinstance(name, WireStr)
        value = b"" if empty else encode_uid(name, "transfer syntax")
        return _item(self.item_type, self.reserved, value)


# --------------------------------------------------------------------------- presentation contexts


@dataclass(slots=True, repr=False, eq=False)
class UnknownItem(Record):
    """An item or sub-item of a type this codec does not know, kept byte for byte.

    PS3.8 §9.3.1 and D.1 ask receivers to ignore and skip such items (wherever they stand:
    among an A-ASSOCIATE's variable items, in a presentation context, in user
    information); research tools need to see them, so they are kept in wire order.
    """

    item_type: int
    value: bytes
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _item(self.item_type, self.reserved, bytes(self.value))


SyntaxItem: TypeAlias = AbstractSyntaxItem | TransferSyntaxItem | UnknownItem


@dataclass(slots=True, repr=False, eq=False)
class PresentationContextRQItem(Record):
    """Presentation context item of an A-ASSOCIATE-RQ (20H, PS3.8 §9.3.2.2).

    ``sub_items`` holds one abstract syntax followed by one or more transfer syntaxes, in
    wire order; :meth:`create` builds it from plain UIDs.
    """

    item_type: ClassVar[int] = 0x20
    context_id: int
    sub_items: list[SyntaxItem]
    reserved: int = field(default=0, kw_only=True)
    reserved_5: int = field(default=0, kw_only=True)
    reserved_6: int = field(default=0, kw_only=True)
    reserved_7: int = field(default=0, kw_only=True)

    @classmethod
    def create(
        cls, context_id: int, abstract_syntax: str, transfer_syntaxes: list[str]
    ) -> PresentationContextRQItem:
        items: list[SyntaxItem] = [AbstractSyntaxItem(abstract_syntax)]
        items.extend(TransferSyntaxItem(ts) for ts in transfer_syntaxes)
        return cls(context_id, items)

    @property
    def abstract_syntax(self) -> str | None:
        """The (first) abstract syntax name, or None when the item has none."""
        for item in self.sub_items:
            if isinstance(item, AbstractSyntaxItem):
                return item.name
        return None

    @property
    def transfer_syntaxes(self) -> list[str]:
        return [item.name for item in self.sub_items if isinstance(item, TransferSyntaxItem)]

    def encode(self) -> bytes:
        body = _pack(
            _FOUR_BYTES,
            "presentation context RQ item",
            self.context_id,
            self.reserved_5,
            self.reserved_6,
            self.reserved_7,
        ) + b"".join(item.encode() for item in self.sub_items)
        return _item(self.item_type, self.reserved, body)


@dataclass(slots=True, repr=False, eq=False)
class PresentationContextACItem(Record):
    """Presentation context item of an A-ASSOCIATE-AC (21H, PS3.8 §9.3.3.2).

    ``result`` is a :class:`PresentationContextResult` value; the transfer syntax is not
    significant unless the result is acceptance (0).
    """

    item_type: ClassVar[int] = 0x21
    context_id: int
    result: int
    sub_items: list[TransferSyntaxItem | UnknownItem]
    reserved: int = field(default=0, kw_only=True)
    reserved_5: int = field(default=0, kw_only=True)
    reserved_7: int = field(default=0, kw_only=True)

    @classmethod
    def create(
        cls, context_id: int, result: int, transfer_syntax: str | None
    ) -> PresentationContextACItem:
        return cls(context_id, result, [TransferSyntaxItem(transfer_syntax or "")])

    @property
    def transfer_syntax(self) -> str | None:
        for item in self.sub_items:
            if isinstance(item, TransferSyntaxItem):
                return item.name
        return None

    def encode(self) -> bytes:
        body = _pack(
            _FOUR_BYTES,
            "presentation context AC item",
            self.context_id,
            self.reserved_5,
            self.result,
            self.reserved_7,
        ) + b"".join(item.encode() for item in self.sub_items)
        return _item(self.item_type, self.reserved, body)


# --------------------------------------------------------------------------- user information


@dataclass(slots=True, repr=False, eq=False)
class MaximumLengthItem(Record):
    """Maximum length sub-item (51H, PS3.8 D.1); 0 means no limit."""

    item_type: ClassVar[int] = 0x51
    maximum_length: int
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        if not 0 <= self.maximum_length <= 0xFFFFFFFF:
            raise ValidationError(f"maximum length {self.maximum_length} is not a 32-bit value")
        return _item(self.item_type, self.reserved, _UINT32.pack(self.maximum_length))


@dataclass(slots=True, repr=False, eq=False)
class ImplementationClassUIDItem(Record):
    """Implementation class UID sub-item (52H, PS3.7 D.3.3.2)."""

    item_type: ClassVar[int] = 0x52
    uid: str
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        value = encode_uid(self.uid, "implementation class UID")
        return _item(self.item_type, self.reserved, value)


@dataclass(slots=True, repr=False, eq=False)
class ImplementationVersionNameItem(Record):
    """Implementation version name sub-item (55H, PS3.7 D.3.3.2): 1 to 16 characters."""

    item_type: ClassVar[int] = 0x55
    name: str
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        value = _text(self.name, "implementation version name", 16)
        return _item(self.item_type, self.reserved, value)


@dataclass(slots=True, repr=False, eq=False)
class AsynchronousOperationsWindowItem(Record):
    """Asynchronous operations window sub-item (53H, PS3.7 D.3.3.3); 0 means unlimited."""

    item_type: ClassVar[int] = 0x53
    maximum_invoked: int
    maximum_performed: int
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        for value in (self.maximum_invoked, self.maximum_performed):
            if not 0 <= value <= 0xFFFF:
                raise ValidationError(f"operations window value {value} is not 16-bit")
        body = _TWO_UINT16.pack(self.maximum_invoked, self.maximum_performed)
        return _item(self.item_type, self.reserved, body)


@dataclass(slots=True, repr=False, eq=False)
class RoleSelectionItem(Record):
    """SCP/SCU role selection sub-item (54H, PS3.7 D.3.3.4); roles are 0 or 1."""

    item_type: ClassVar[int] = 0x54
    sop_class_uid: str
    scu_role: int
    scp_role: int
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        uid = _u16_prefixed(encode_uid(self.sop_class_uid, "SOP class UID"), "SOP class UID")
        return _item(
            self.item_type,
            self.reserved,
            uid + _pack(_TWO_BYTES, "role selection", self.scu_role, self.scp_role),
        )


@dataclass(slots=True, repr=False, eq=False)
class SOPClassExtendedNegotiationItem(Record):
    """SOP class extended negotiation sub-item (56H, PS3.7 D.3.3.5)."""

    item_type: ClassVar[int] = 0x56
    sop_class_uid: str
    service_class_application_information: bytes
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        uid = _u16_prefixed(encode_uid(self.sop_class_uid, "SOP class UID"), "SOP class UID")
        info = bytes(self.service_class_application_information)
        return _item(self.item_type, self.reserved, uid + info)


@dataclass(slots=True, repr=False, eq=False)
class SOPClassCommonExtendedNegotiationItem(Record):
    """SOP class common extended negotiation sub-item (57H, PS3.7 D.3.3.6).

    Byte 1 is the sub-item version (0), not a reserved byte.
    """

    item_type: ClassVar[int] = 0x57
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: list[str] = field(default_factory=list)
    sub_item_version: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        related = b"".join(
            _u16_prefixed(encode_uid(uid, "related general SOP class UID"), "related UID")
            for uid in self.related_general_sop_class_uids
        )
        body = (
            _u16_prefixed(encode_uid(self.sop_class_uid, "SOP class UID"), "SOP class UID")
            + _u16_prefixed(
                encode_uid(self.service_class_uid, "service class UID"), "service class UID"
            )
            + _u16_prefixed(related, "related general SOP class identification")
        )
        return _item(self.item_type, self.sub_item_version, body)


@dataclass(slots=True, repr=False, eq=False)
class UserIdentityRQItem(Record):
    """User identity negotiation sub-item of the RQ (58H, PS3.7 D.3.3.7.1)."""

    item_type: ClassVar[int] = 0x58
    user_identity_type: int
    positive_response_requested: int
    primary_field: bytes
    secondary_field: bytes = b""
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        body = (
            _pack(
                _TWO_BYTES,
                "user identity",
                self.user_identity_type,
                self.positive_response_requested,
            )
            + _u16_prefixed(bytes(self.primary_field), "user identity primary field")
            + _u16_prefixed(bytes(self.secondary_field), "user identity secondary field")
        )
        return _item(self.item_type, self.reserved, body)


@dataclass(slots=True, repr=False, eq=False)
class UserIdentityACItem(Record):
    """User identity negotiation sub-item of the AC (59H, PS3.7 D.3.3.7.2)."""

    item_type: ClassVar[int] = 0x59
    server_response: bytes
    reserved: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        response = _u16_prefixed(bytes(self.server_response), "user identity server response")
        return _item(self.item_type, self.reserved, response)


UserInformationSubItem: TypeAlias = (
    MaximumLengthItem
    | ImplementationClassUIDItem
    | ImplementationVersionNameItem
    | AsynchronousOperationsWindowItem
    | RoleSelectionItem
    | SOPClassExtendedNegotiationItem
    | SOPClassCommonExtendedNegotiationItem
    | UserIdentityRQItem
    | UserIdentityACItem
    | UnknownItem
)


@dataclass(slots=True, repr=False, eq=False)
class UserInformationItem(Record):
    """User information item (50H, PS3.8 §9.3.2.3, Annex D); sub-items in wire order."""

    item_type: ClassVar[int] = 0x50
    sub_items: list[UserInformationSubItem] = field(default_factory=list)
    reserved: int = field(default=0, kw_only=True)

    @classmethod
    def create(
        cls,
        maximum_length: int,
        implementation_class_uid: str,
        implementation_version_name: str | None = None,
        *,
        asynchronous_operations_window: tuple[int, int] | None = None,
        role_selections: list[RoleSelectionItem] | None = None,
        extended_negotiation: list[SOPClassExtendedNegotiationItem] | None = None,
        common_extended_negotiation: list[SOPClassCommonExtendedNegotiationItem] | None = None,
        user_identity: UserIdentityRQItem | UserIdentityACItem | None = None,
    ) -> UserInformationItem:
        """Build the sub-items in the order PS3.7 Annex D lists them."""
        items: list[UserInformationSubItem] = [
            MaximumLengthItem(maximum_length),
            ImplementationClassUIDItem(implementation_class_uid),
        ]
        if asynchronous_operations_window is not None:
            items.append(AsynchronousOperationsWindowItem(*asynchronous_operations_window))
        items.extend(role_selections or ())
        if implementation_version_name is not None:
            items.append(ImplementationVersionNameItem(implementation_version_name))
        items.extend(extended_negotiation or ())
        items.extend(common_extended_negotiation or ())
        if user_identity is not None:
            items.append(user_identity)
        return cls(items)

    def _first(self, kind: type[UserInformationSubItem]) -> UserInformationSubItem | None:
        for item in self.sub_items:
            if isinstance(item, kind):
                return item
        return None

    @property
    def maximum_length(self) -> int | None:
        item = self._first(MaximumLengthItem)
        return item.maximum_length if isinstance(item, MaximumLengthItem) else None

    @property
    def implementation_class_uid(self) -> str | None:
        item = self._first(ImplementationClassUIDItem)
        return item.uid if isinstance(item, ImplementationClassUIDItem) else None

    @property
    def implementation_version_name(self) -> str | None:
        item = self._first(ImplementationVersionNameItem)
        return item.name if isinstance(item, ImplementationVersionNameItem) else None

    @property
    def asynchronous_operations_window(self) -> AsynchronousOperationsWindowItem | None:
        item = self._first(AsynchronousOperationsWindowItem)
        return item if isinstance(item, AsynchronousOperationsWindowItem) else None

    @property
    def role_selections(self) -> list[RoleSelectionItem]:
        return [i for i in self.sub_items if isinstance(i, RoleSelectionItem)]

    @property
    def extended_negotiation(self) -> list[SOPClassExtendedNegotiationItem]:
        return [i for i in self.sub_items if isinstance(i, SOPClassExtendedNegotiationItem)]

    @property
    def common_extended_negotiation(self) -> list[SOPClassCommonExtendedNegotiationItem]:
        return [i for i in self.sub_items if isinstance(i, SOPClassCommonExtendedNegotiationItem)]

    @property
    def user_identity(self) -> UserIdentityRQItem | None:
        item = self._first(UserIdentityRQItem)
        return item if isinstance(item, UserIdentityRQItem) else None

    @property
    def user_identity_response(self) -> UserIdentityACItem | None:
        item = self._first(UserIdentityACItem)
        return item if isinstance(item, UserIdentityACItem) else None

    @property
    def unknown_items(self) -> list[UnknownItem]:
        return [i for i in self.sub_items if isinstance(i, UnknownItem)]

    def encode(self) -> bytes:
        return _item(self.item_type, self.reserved, b"".join(i.encode() for i in self.sub_items))


# --------------------------------------------------------------------------- PDUs

AssociateItem: TypeAlias = (
    ApplicationContextItem
    | PresentationContextRQItem
    | PresentationContextACItem
    | UserInformationItem
    | UnknownItem
)


@dataclass(slots=True, repr=False, eq=False)
class _AssociatePDU(Record):
    """Shared shape of A-ASSOCIATE-RQ and -AC (PS3.8 Tables 9-11 and 9-17)."""

    pdu_type: ClassVar[int]
    called_ae_title: str
    calling_ae_title: str
    variable_items: list[AssociateItem]
    protocol_version: int = field(default=1, kw_only=True)
    reserved: int = field(default=0, kw_only=True)
    reserved_8: int = field(default=0, kw_only=True)
    reserved_42: bytes = field(default=bytes(32), kw_only=True)

    @property
    def application_context_name(self) -> str | None:
        for item in self.variable_items:
            if isinstance(item, ApplicationContextItem):
                return item.name
        return None

    @property
    def user_information(self) -> UserInformationItem | None:
        for item in self.variable_items:
            if isinstance(item, UserInformationItem):
                return item
        return None

    def encode(self) -> bytes:
        if len(self.reserved_42) != 32:
            raise ValidationError("reserved_42 must be exactly 32 bytes")
        fixed = _pack(
            _ASSOCIATE_FIXED,
            type(self).__name__,
            self.protocol_version,
            self.reserved_8,
            encode_ae_title(self.called_ae_title),
            encode_ae_title(self.calling_ae_title),
            self.reserved_42,
        )
        body = fixed + b"".join(item.encode() for item in self.variable_items)
        return (
            _pack(_PDU_HEADER, type(self).__name__, self.pdu_type, self.reserved, len(body)) + body
        )


@dataclass(slots=True, repr=False, eq=False)
class AAssociateRQ(_AssociatePDU):
    """A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2)."""

    pdu_type: ClassVar[int] = PDUType.A_ASSOCIATE_RQ

    @property
    def presentation_contexts(self) -> list[PresentationContextRQItem]:
        return [i for i in self.variable_items if isinstance(i, PresentationContextRQItem)]


@dataclass(slots=True, repr=False, eq=False)
class AAssociateAC(_AssociatePDU):
    """A-ASSOCIATE-AC PDU (PS3.8 §9.3.3); the AE title fields echo the RQ's."""

    pdu_type: ClassVar[int] = PDUType.A_ASSOCIATE_AC

    @property
    def presentation_contexts(self) -> list[PresentationContextACItem]:
        return [i for i in self.variable_items if isinstance(i, PresentationContextACItem)]


@dataclass(slots=True, repr=False, eq=False)
class AAssociateRJ(Record):
    """A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4)."""

    pdu_type: ClassVar[int] = PDUType.A_ASSOCIATE_RJ
    result: int
    source: int
    reason: int
    reserved: int = field(default=0, kw_only=True)
    reserved_6: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _pack(_PDU_HEADER, "A-ASSOCIATE-RJ", self.pdu_type, self.reserved, 4) + _pack(
            _FOUR_BYTES, "A-ASSOCIATE-RJ", self.reserved_6, self.result, self.source, self.reason
        )


Buffer: TypeAlias = bytes | bytearray | memoryview


@dataclass(slots=True, eq=False, repr=False)
class PresentationDataValue(Record):
    """One presentation data value item of a P-DATA-TF (PS3.8 §9.3.5.1, Annex E.2).

    ``data`` is a fragment of a command or data set; when decoded it is a memoryview into
    the received PDU, not a copy. ``control_header`` bit 0 set: command; bit 1 set: last.
    """

    context_id: int
    control_header: int
    data: Buffer

    def __post_init__(self) -> None:
        data = self.data
        if type(data) is memoryview and (data.format != "B" or data.ndim != 1):
            # lengths are counted in bytes, whatever the view's item type
            self.data = data.cast("B") if data.c_contiguous else memoryview(data.tobytes())

    @property
    def is_command(self) -> bool:
        return bool(self.control_header & 0x01)

    @property
    def is_last(self) -> bool:
        return bool(self.control_header & 0x02)

    def header(self) -> bytes:
        """The 6-byte item header (length, context ID, message control header)."""
        return _pack(
            _PDV_HEADER,
            "presentation data value",
            len(self.data) + 2,
            self.context_id,
            self.control_header,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PresentationDataValue):
            return NotImplemented
        return (
            self.context_id == other.context_id
            and self.control_header == other.control_header
            and self.data == other.data
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PresentationDataValue(context_id={self.context_id}, "
            f"control_header=0x{self.control_header:02X}, data=<{len(self.data)} bytes>)"
        )


@dataclass(slots=True, repr=False, eq=False)
class PDataTF(Record):
    """P-DATA-TF PDU (PS3.8 §9.3.5): one or more presentation data values."""

    pdu_type: ClassVar[int] = PDUType.P_DATA_TF
    pdvs: list[PresentationDataValue]
    reserved: int = field(default=0, kw_only=True)

    def encode_parts(self) -> list[Buffer]:
        """Headers and payloads as separate buffers, for ``transport.writelines()``."""
        length = sum(len(pdv.data) + PDV_HEADER_LENGTH for pdv in self.pdvs)
        if length > 0xFFFFFFFF:
            raise ValidationError(f"P-DATA-TF of {length} bytes exceeds the 32-bit length field")
        if not self.pdvs:
            raise ValidationError("a P-DATA-TF needs at least one presentation data value")
        parts: list[Buffer] = [
            _pack(_PDU_HEADER, "P-DATA-TF", self.pdu_type, self.reserved, length)
        ]
        for pdv in self.pdvs:
            parts.append(pdv.header())
            parts.append(pdv.data)
        return parts

    def encode(self) -> bytes:
        return b"".join(self.encode_parts())


@dataclass(slots=True, repr=False, eq=False)
class _FourReservedBytesPDU(Record):
    """Shape of A-RELEASE-RQ and -RP: a 4-byte reserved field (PS3.8 Tables 9-24, 9-25)."""

    pdu_type: ClassVar[int]
    reserved: int = field(default=0, kw_only=True)
    reserved_6: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _pack(_PDU_HEADER, type(self).__name__, self.pdu_type, self.reserved, 4) + _pack(
            _UINT32, type(self).__name__, self.reserved_6
        )


@dataclass(slots=True, repr=False, eq=False)
class AReleaseRQ(_FourReservedBytesPDU):
    """A-RELEASE-RQ PDU (PS3.8 §9.3.6)."""

    pdu_type: ClassVar[int] = PDUType.A_RELEASE_RQ


@dataclass(slots=True, repr=False, eq=False)
class AReleaseRP(_FourReservedBytesPDU):
    """A-RELEASE-RP PDU (PS3.8 §9.3.7)."""

    pdu_type: ClassVar[int] = PDUType.A_RELEASE_RP


@dataclass(slots=True, repr=False, eq=False)
class AAbort(Record):
    """A-ABORT PDU (PS3.8 §9.3.8); see :class:`AbortSource` and :class:`AbortReason`."""

    pdu_type: ClassVar[int] = PDUType.A_ABORT
    source: int = 0
    reason: int = 0
    reserved: int = field(default=0, kw_only=True)
    reserved_6: int = field(default=0, kw_only=True)
    reserved_7: int = field(default=0, kw_only=True)

    def encode(self) -> bytes:
        return _pack(_PDU_HEADER, "A-ABORT", self.pdu_type, self.reserved, 4) + _pack(
            _FOUR_BYTES, "A-ABORT", self.reserved_6, self.reserved_7, self.source, self.reason
        )


PDU: TypeAlias = (
    AAssociateRQ | AAssociateAC | AAssociateRJ | PDataTF | AReleaseRQ | AReleaseRP | AAbort
)


# --------------------------------------------------------------------------- decoding


_KNOWN_ITEM_TYPES = frozenset((0x10, 0x20, 0x21, 0x30, 0x40, 0x50, *range(0x51, 0x5A)))


def _misplaced(item_type: int, where: str, offset: int) -> PDUError:
    """A known item type where PS3.8 §9.3 does not allow it (A-ABORT reason 5)."""
    return PDUError(
        f"item type 0x{item_type:02X} is not allowed in {where}",
        offset,
        AbortReason.UNEXPECTED_PDU_PARAMETER,
    )


def _decode_syntax_item(
    buf: bytes, item_type: int, reserved: int, start: int, end: int
) -> SyntaxItem:
    name = decode_uid(buf[start:end])
    if item_type == AbstractSyntaxItem.item_type:
        return AbstractSyntaxItem(name, reserved=reserved)
    return TransferSyntaxItem(name, reserved=reserved)


def _decode_presentation_context(
    buf: bytes, item_type: int, reserved: int, start: int, end: int
) -> PresentationContextRQItem | PresentationContextACItem:
    if end - start < 4:
        raise PDUError(
            f"presentation context item 0x{item_type:02X} is {end - start} bytes; at least 4",
            start - ITEM_HEADER_LENGTH,
        )
    context_id, byte5, byte6, byte7 = _FOUR_BYTES.unpack_from(buf, start)
    if item_type == PresentationContextRQItem.item_type:
        sub_items: list[SyntaxItem] = []
        for sub_type, sub_reserved, sub_start, sub_end in _iter_items(
            buf, start + 4, end, "presentation context item"
        ):
            if sub_type not in _KNOWN_ITEM_TYPES:  # ignored and skipped, kept for fidelity
                sub_items.append(
                    UnknownItem(sub_type, buf[sub_start:sub_end], reserved=sub_reserved)
                )
            elif sub_type in (AbstractSyntaxItem.item_type, TransferSyntaxItem.item_type):
                sub_items.append(
                    _decode_syntax_item(buf, sub_type, sub_reserved, sub_start, sub_end)
                )
            else:
                raise _misplaced(
                    sub_type, "a presentation context RQ item", sub_start - ITEM_HEADER_LENGTH
                )
        return PresentationContextRQItem(
            context_id,
            sub_items,
            reserved=reserved,
            reserved_5=byte5,
            reserved_6=byte6,
            reserved_7=byte7,
        )
    transfer: list[TransferSyntaxItem | UnknownItem] = []
    for sub_type, sub_reserved, sub_start, sub_end in _iter_items(
        buf, start + 4, end, "presentation context item"
    ):
        if sub_type not in _KNOWN_ITEM_TYPES:
            transfer.append(UnknownItem(sub_type, buf[sub_start:sub_end], reserved=sub_reserved))
        elif sub_type == TransferSyntaxItem.item_type:
            transfer.append(
                TransferSyntaxItem(decode_uid(buf[sub_start:sub_end]), reserved=sub_reserved)
            )
        else:
            raise _misplaced(
                sub_type, "a presentation context AC item", sub_start - ITEM_HEADER_LENGTH
            )
    return PresentationContextACItem(
        context_id, byte6, transfer, reserved=reserved, reserved_5=byte5, reserved_7=byte7
    )


def _decode_user_sub_item(
    buf: bytes, item_type: int, reserved: int, start: int, end: int
) -> UserInformationSubItem:
    length = end - start
    offset = start - ITEM_HEADER_LENGTH
    if item_type == 0x51:
        _expect_length("maximum length sub-item", length, 4, offset)
        return MaximumLengthItem(_UINT32.unpack_from(buf, start)[0], reserved=reserved)
    if item_type == 0x52:
        return ImplementationClassUIDItem(decode_uid(buf[start:end]), reserved=reserved)
    if item_type == 0x53:
        _expect_length("asynchronous operations window sub-item", length, 4, offset)
        invoked, performed = _TWO_UINT16.unpack_from(buf, start)
        return AsynchronousOperationsWindowItem(invoked, performed, reserved=reserved)
    if item_type == 0x54:
        uid, pos = _read_u16_prefixed(buf, start, end, "role selection SOP class UID")
        _expect_length("role selection sub-item", length, pos - start + 2, offset)
        return RoleSelectionItem(decode_uid(uid), buf[pos], buf[pos + 1], reserved=reserved)
    if item_type == 0x55:
        return ImplementationVersionNameItem(WireStr.from_wire(buf[start:end]), reserved=reserved)
    if item_type == 0x56:
        uid, pos = _read_u16_prefixed(buf, start, end, "extended negotiation SOP class UID")
        return SOPClassExtendedNegotiationItem(decode_uid(uid), buf[pos:end], reserved=reserved)
    if item_type == 0x57:
        sop, pos = _read_u16_prefixed(buf, start, end, "common extended SOP class UID")
        service, pos = _read_u16_prefixed(buf, pos, end, "common extended service class UID")
        related_raw, pos = _read_u16_prefixed(
            buf, pos, end, "related general SOP class identification"
        )
        _expect_length("common extended negotiation sub-item", length, pos - start, offset)
        related: list[str] = []
        rel_pos, rel_end = pos - len(related_raw), pos
        while rel_pos < rel_end:
            uid, rel_pos = _read_u16_prefixed(
                buf, rel_pos, rel_end, "related general SOP class UID"
            )
            related.append(decode_uid(uid))
        return SOPClassCommonExtendedNegotiationItem(
            decode_uid(sop), decode_uid(service), related, sub_item_version=reserved
        )
    if item_type == 0x58:
        if length < 6:
            raise PDUError(f"user identity sub-item has length {length}; at least 6", offset)
        identity_type, response_requested = buf[start], buf[start + 1]
        primary, pos = _read_u16_prefixed(buf, start + 2, end, "user identity primary field")
        secondary, pos = _read_u16_prefixed(buf, pos, end, "user identity secondary field")
        _expect_length("user identity sub-item", length, pos - start, offset)
        return UserIdentityRQItem(
            identity_type, response_requested, primary, secondary, reserved=reserved
        )
    if item_type == 0x59:
        response, pos = _read_u16_prefixed(buf, start, end, "user identity server response")
        _expect_length("user identity AC sub-item", length, pos - start, offset)
        return UserIdentityACItem(response, reserved=reserved)
    return UnknownItem(item_type, buf[start:end], reserved=reserved)


def _decode_associate(buf: bytes, pdu_type: int, reserved: int) -> AAssociateRQ | AAssociateAC:
    end = len(buf)
    if end - PDU_HEADER_LENGTH < _ASSOCIATE_FIXED_LENGTH:
        raise PDUError(
            f"A-ASSOCIATE PDU length {end - PDU_HEADER_LENGTH} is below the fixed 68 bytes", 2
        )
    version, reserved_8, called, calling, reserved_42 = _ASSOCIATE_FIXED.unpack_from(
        buf, PDU_HEADER_LENGTH
    )
    is_rq = pdu_type == PDUType.A_ASSOCIATE_RQ
    context_type = (
        PresentationContextRQItem.item_type if is_rq else PresentationContextACItem.item_type
    )
    name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
    items: list[AssociateItem] = []
    for item_type, item_reserved, start, stop in _iter_items(
        buf, PDU_HEADER_LENGTH + _ASSOCIATE_FIXED_LENGTH, end, name
    ):
        if item_type == ApplicationContextItem.item_type:
            items.append(
                ApplicationContextItem(decode_uid(buf[start:stop]), reserved=item_reserved)
            )
        elif item_type == context_type:
            items.append(_decode_presentation_context(buf, item_type, item_reserved, start, stop))
        elif item_type == UserInformationItem.item_type:
            sub_items = [
                _decode_user_sub_item(buf, t, r, s, e)
                for t, r, s, e in _iter_items(buf, start, stop, "user information item")
            ]
            items.append(UserInformationItem(sub_items, reserved=item_reserved))
        elif item_type not in _KNOWN_ITEM_TYPES:  # ignored and skipped, kept for fidelity
            items.append(UnknownItem(item_type, buf[start:stop], reserved=item_reserved))
        else:
            raise _misplaced(item_type, f"an {name}", start - ITEM_HEADER_LENGTH)
    cls = AAssociateRQ if is_rq else AAssociateAC
    return cls(
        decode_ae_title(called),
        decode_ae_title(calling),
        items,
        protocol_version=version,
        reserved=reserved,
        reserved_8=reserved_8,
        reserved_42=reserved_42,
    )


def decode_p_data(view: memoryview, reserved: int) -> PDataTF:
    """The P-DATA-TF in ``view`` (header included, its length already checked)."""
    end = len(view)
    pos = PDU_HEADER_LENGTH
    pdvs: list[PresentationDataValue] = []
    unpack = _PDV_HEADER.unpack_from
    while pos < end:
        if end - pos < PDV_HEADER_LENGTH:
            raise PDUError("truncated presentation data value item header", pos)
        length, context_id, control = unpack(view, pos)
        if length < 2:
            raise PDUError(f"presentation data value item length {length} is below 2", pos)
        stop = pos + 4 + length
        if stop > end:
            raise PDUError(
                f"presentation data value item length {length} overruns the P-DATA-TF by "
                f"{stop - end} bytes",
                pos,
            )
        pdvs.append(
            PresentationDataValue(context_id, control, view[pos + PDV_HEADER_LENGTH : stop])
        )
        pos = stop
    if not pdvs:
        raise PDUError("P-DATA-TF holds no presentation data value item", PDU_HEADER_LENGTH)
    return PDataTF(pdvs, reserved=reserved)


def _decode_four_bytes(buf: Buffer, pdu_type: int, reserved: int) -> PDU:
    if len(buf) != PDU_HEADER_LENGTH + 4:
        raise PDUError(
            f"{PDUType(pdu_type).name.replace('_', '-')} PDU length is "
            f"{len(buf) - PDU_HEADER_LENGTH}; expected 4",
            2,
        )
    if pdu_type in (PDUType.A_RELEASE_RQ, PDUType.A_RELEASE_RP):
        (value,) = _UINT32.unpack_from(buf, PDU_HEADER_LENGTH)
        cls = AReleaseRQ if pdu_type == PDUType.A_RELEASE_RQ else AReleaseRP
        return cls(reserved=reserved, reserved_6=value)
    b6, b7, b8, b9 = _FOUR_BYTES.unpack_from(buf, PDU_HEADER_LENGTH)
    if pdu_type == PDUType.A_ASSOCIATE_RJ:
        return AAssociateRJ(b7, b8, b9, reserved=reserved, reserved_6=b6)
    return AAbort(b8, b9, reserved=reserved, reserved_6=b6, reserved_7=b7)


def peek_header(data: Buffer) -> tuple[int, int]:
    """Return (PDU type, PDU length) of the 6-byte header at the start of ``data``."""
    if len(data) < PDU_HEADER_LENGTH:
        raise PDUError(f"truncated PDU header: {len(data)} of 6 bytes", len(data))
    pdu_type, _, length = _PDU_HEADER.unpack_from(data, 0)
    if pdu_type not in _VALID_TYPES:
        raise PDUError(f"unknown PDU type 0x{pdu_type:02X}", 0, AbortReason.UNRECOGNIZED_PDU)
    return pdu_type, length


_VALID_TYPES = frozenset(int(t) for t in PDUType)


def decode(data: Buffer) -> PDU:
    """Decode one whole PDU (header included) into its typed object.

    P-DATA-TF payloads are memoryviews into ``data``, not copies: keep ``data`` unchanged
    while they are in use. Raises :class:`PDUError` for anything malformed.
    """
    pdu_type, length = peek_header(data)
    if len(data) != PDU_HEADER_LENGTH + length:
        if len(data) < PDU_HEADER_LENGTH + length:
            raise PDUError(
                f"truncated PDU: length field says {length} bytes, {len(data) - 6} present",
                len(data),
            )
        raise PDUError(
            f"{len(data) - 6 - length} bytes follow the PDU's {length} bytes",
            PDU_HEADER_LENGTH + length,
        )
    reserved = data[1]
    if pdu_type == PDUType.P_DATA_TF:
        return decode_p_data(memoryview(data), reserved)
    if pdu_type in (PDUType.A_ASSOCIATE_RQ, PDUType.A_ASSOCIATE_AC):
        return _decode_associate(bytes(data), pdu_type, reserved)
    return _decode_four_bytes(data, pdu_type, reserved)

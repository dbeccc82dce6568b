"""A DICOM conformance statement generated from the node itself (PS3.2 Annex A form).

Everything the statement says is read from the code that does it, so it cannot drift:
the AEs, ports, limits and timeouts from the :class:`~dicomwire.services.node.NodeConfig`;
the SOP classes, transfer syntaxes, roles and extended negotiation from the services'
:class:`~dicomwire.services.service.Binding` objects; the statuses each SCP answers from
each service's :attr:`~dicomwire.services.service.Service.statuses` (the named constants
its handlers return); the SCU activities and how each reacts to the statuses it receives
from the :class:`~dicomwire.services.service.ScuActivity` declared beside the SCU code
(:data:`SCU_ACTIVITIES`); the association rejections and aborts from the PS3.8 enumerations
the Upper Layer sends (:data:`REJECTIONS`, :data:`ABORTS`); the TLS profiles, cipher
suites, versions and options from :mod:`dicomwire.ul.tls` (its constants and the context it
builds); configuration parameters and their defaults from the
configuration dataclasses; the audit events from :data:`~.audit.service.NODE_EVENTS`.
:func:`conformance_statement` renders it as Markdown or HTML
(``dicomwire conformance-statement``); ``docs/conformance-statement.md`` is the default
node's, and a test keeps it equal to what this module produces.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import inspect
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, __version__
from ..dimse.status import (
    CANNOT_UNDERSTAND,
    DUPLICATE_INVOCATION,
    PROCESSING_FAILURE,
    UNRECOGNIZED_OPERATION,
    Status,
)
from ..ul.negotiation import DEFAULT_TRANSFER_SYNTAXES, MINIMUM_USABLE_PDU_LENGTH, KnownNode
from ..ul.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AbortReason,
    AbortSource,
    ACSERejectReason,
    PresentationContextResult,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
    ServiceUserRejectReason,
)
from ..ul.timeouts import Timeouts
from ..ul.tls import PROFILE_CIPHERS, TLSConfig, TLSProfile, profile_context
from .audit.service import NODE_EVENTS
from .audit.trail import FACILITY, MSGID, AuditConfig
from .client import ECHO_ACTIVITY, QUERY_ACTIVITY, RETRIEVE_ACTIVITY, STORE_ACTIVITY
from .commitment.scu import COMMITMENT_ACTIVITY
from .directory import RemoteAE
from .mpps.relay import MPPS_RELAY_ACTIVITY
from .mpps.scu import MPPS_ACTIVITY
from .node import SERVICE_TYPES, Node, NodeConfig
from .print.scu import PRINT_ACTIVITY
from .service import (
    ANY_SOP_CLASS,
    ScuActivity,
    StatusDeclaration,
    StatusReaction,
    merge_bindings,
)
from .storage import StorageConfig
from .storage.sop_classes import storage_sop_classes
from .worklist.scu import WORKLIST_ACTIVITY

__all__ = [
    "ABORTS",
    "REJECTIONS",
    "SCU_ACTIVITIES",
    "SESSION_STATUSES",
    "Abort",
    "Document",
    "Rejection",
    "build_statement",
    "conformance_statement",
    "render_html",
    "render_markdown",
    "tls_facts",
]

log = logging.getLogger("dicomwire.services.conformance")

Format = Literal["markdown", "html"]


# --------------------------------------------------------------------------- the engine's


@dataclass(frozen=True, slots=True)
class Rejection:
    """An A-ASSOCIATE-RJ the acceptor sends (PS3.8 Table 9-21) and when."""

    result: RejectResult
    source: RejectSource
    reason: enum.IntEnum
    when: str


#: Every A-ASSOCIATE-RJ the node sends: the enumerations src/ul/negotiation.py
#: (``accept_or_reject``), src/ul/machine.py (``default_provider_check``) and
#: src/ul/session.py (``CONGESTION``) answer with.
REJECTIONS: tuple[Rejection, ...] = (
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_USER,
        ServiceUserRejectReason.NO_REASON_GIVEN,
        "no proposed presentation context is acceptable; a maximum PDU length below "
        f"{MINIMUM_USABLE_PDU_LENGTH} bytes; a user identity that is refused",
    ),
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_USER,
        ServiceUserRejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
        f"the application context is not {DICOM_APPLICATION_CONTEXT}",
    ),
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_USER,
        ServiceUserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
        "an empty calling AE title; a caller not in known_nodes (or [[nodes]] with "
        "restrict_callers); a TLS peer certificate refused for the calling AE title",
    ),
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_USER,
        ServiceUserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
        "the called AE title is not one of ae_titles (unless promiscuous)",
    ),
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_PROVIDER_ACSE,
        ACSERejectReason.NO_REASON_GIVEN,
        "not exactly one application context item, or more than one user information item",
    ),
    Rejection(
        RejectResult.REJECTED_PERMANENT,
        RejectSource.SERVICE_PROVIDER_ACSE,
        ACSERejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
        "the protocol version does not have bit 0 set",
    ),
    Rejection(
        RejectResult.REJECTED_TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        PresentationRejectReason.TEMPORARY_CONGESTION,
        "the acceptance policy itself failed (an internal error, logged)",
    ),
    Rejection(
        RejectResult.REJECTED_TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
        "max_associations associations are already open (per worker process)",
    ),
)


@dataclass(frozen=True, slots=True)
class Abort:
    """An A-ABORT the node sends (PS3.8 Table 9-26) and when."""

    source: AbortSource
    reason: int
    when: str


#: Every A-ABORT the node sends: src/ul/machine.py's AA-1/AA-7/AA-8 actions and the
#: reasons of the PDU decoder's errors (src/ul/pdu.py, ``PDUError.abort_reason``).
ABORTS: tuple[Abort, ...] = (
    Abort(
        AbortSource.SERVICE_USER,
        0,
        "the node gives up the association: a connection that does not start with a valid "
        "A-ASSOCIATE-RQ, a malformed DIMSE message, a DIMSE or network idle timeout, a peer "
        "that stops reading, shutdown after its grace period",
    ),
    Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU, "an unknown PDU type"),
    Abort(
        AbortSource.SERVICE_PROVIDER,
        AbortReason.UNEXPECTED_PDU,
        "a PDU that the association's state does not allow (PS3.8 Table 9-10)",
    ),
    Abort(
        AbortSource.SERVICE_PROVIDER,
        AbortReason.UNEXPECTED_PDU_PARAMETER,
        "a known item where PS3.8 §9.3 does not allow it, in an A-ASSOCIATE-AC to our request "
        "(a malformed first PDU on an incoming connection gets 0/0)",
    ),
    Abort(
        AbortSource.SERVICE_PROVIDER,
        AbortReason.INVALID_PDU_PARAMETER_VALUE,
        "a PDU or item whose length or value is invalid",
    ),
)

#: Statuses the DIMSE session answers itself, for any SOP class (src/dimse/session.py).
SESSION_STATUSES: tuple[StatusDeclaration, ...] = (
    StatusDeclaration(UNRECOGNIZED_OPERATION, "no service handles the command on the context"),
    StatusDeclaration(DUPLICATE_INVOCATION, "a Message ID already outstanding"),
    StatusDeclaration(CANNOT_UNDERSTAND, "the request's data set cannot be decoded"),
    StatusDeclaration(PROCESSING_FAILURE, "the handler failed unexpectedly (logged)"),
)


# --------------------------------------------------------------------------- the document


@dataclass(slots=True)
class Heading:
    level: int
    text: str


@dataclass(slots=True)
class Paragraph:
    text: str


@dataclass(slots=True)
class Bullets:
    items: list[str]


@dataclass(slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


Block = Heading | Paragraph | Bullets | Table


@dataclass(slots=True)
class Document:
    """A statement as blocks, rendered by :func:`render_markdown` or :func:`render_html`."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def bullets(self, items: Iterable[str]) -> None:
        self.blocks.append(Bullets(list(items)))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        self.blocks.append(Table(list(headers), [list(r) for r in rows]))

    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(document: Document) -> str:
    """GitHub-flavoured Markdown."""
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            lines += ["#" * (block.level + 1) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        else:
            lines.append("| " + " | ".join(map(_cell, block.headers)) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_html(document: Document) -> str:
    """A standalone HTML page (escaped with :func:`html.escape`)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{e(document.title)}</title>',
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;"
        "text-align:left;vertical-align:top}</style></head>",
        "<body>",
        f"<h1>{e(document.title)}</h1>",
    ]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(block.level + 1, 6)
            out.append(f"<h{level}>{e(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        else:
            head = "".join(f"<th>{e(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- facts


def _uid_name(uid: str) -> str:
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return str(entry[0]) if entry else uid


def _syntaxes(uids: Iterable[str]) -> str:
    return ", ".join(f"{_uid_name(u)} ({u})" for u in uids)


def _hex(code: int) -> str:
    return f"{code:04X}"


def _status_rows(declared: Iterable[StatusDeclaration], service: str | None) -> list[list[str]]:
    rows = []
    for declaration in declared:
        status = Status(declaration.status)
        meaning = status.meaning_for(service) if service else status.meaning
        rows.append([_hex(status), status.category.value, meaning, declaration.when])
    return rows


def _default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "(none)"
        return ", ".join(map(str, value)) if len(value) <= 3 else f"{len(value)} values"
    if value is None:
        return "(none)"
    if value == "":
        return '""'
    return str(value)


def _field_default(item: dataclasses.Field[Any]) -> str:
    if item.default is not dataclasses.MISSING:
        return _default(item.default)
    if item.default_factory is not dataclasses.MISSING:
        return _default(item.default_factory())
    return "(required)"


def _field_notes(kind: type[Any]) -> dict[str, str]:
    """The ``#:`` comments above each field of ``kind``'s source, by field name."""
    try:
        source = inspect.getsource(kind).splitlines()
    except (OSError, TypeError):
        return {}
    notes: dict[str, str] = {}
    pending: list[str] = []
    for line in source:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        name = stripped.split(":", 1)[0]
        if pending and name.isidentifier():
            notes[name] = " ".join(pending)
        pending = []
    return notes


def _config_rows(kind: type[Any], skip: Iterable[str] = ()) -> list[list[str]]:
    notes = _field_notes(kind)
    skipped = set(skip)
    return [
        [item.name, _field_default(item), notes.get(item.name, "")]
        for item in dataclasses.fields(kind)
        if item.name not in skipped and not item.name.startswith("_")
    ]


def _character_sets() -> list[str]:
    from pydicom.charset import python_encoding

    return sorted(k for k in python_encoding if k)


# --------------------------------------------------------------------------- the statement

_COMMANDS = {
    0x0001: "C-STORE",
    0x0020: "C-FIND",
    0x0010: "C-GET",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0100: "N-EVENT-REPORT",
    0x0110: "N-GET",
    0x0120: "N-SET",
    0x0130: "N-ACTION",
    0x0140: "N-CREATE",
    0x0150: "N-DELETE",
}

#: The SCU activities of the tools, the API and the node, each declared beside the code
#: that performs it and acts on the statuses it receives.
SCU_ACTIVITIES: tuple[ScuActivity, ...] = (
    ECHO_ACTIVITY,
    STORE_ACTIVITY,
    QUERY_ACTIVITY,
    RETRIEVE_ACTIVITY,
    WORKLIST_ACTIVITY,
    MPPS_ACTIVITY,
    MPPS_RELAY_ACTIVITY,
    COMMITMENT_ACTIVITY,
    PRINT_ACTIVITY,
)


def _activity_classes(activity: ScuActivity) -> str:
    if not activity.sop_classes:  # storage: the class of each file sent
        return (
            "the SOP class of each file sent (any storage SOP class, e.g. the "
            f"{len(storage_sop_classes())} of section 2)"
        )
    return ", ".join(_uid_name(uid) for uid in activity.sop_classes)


def _received(row: StatusReaction, activity: ScuActivity) -> str:
    """The statuses a reaction row covers, as the statement shows them."""
    if row.codes:
        return ", ".join(
            f"{_hex(code[0])}-{_hex(code[1])}" if isinstance(code, tuple) else _hex(code)
            for code in row.codes
        )
    narrower = any(r.codes and r.category is row.category for r in activity.received)
    return f"{'other' if narrower else 'any'} {row.category.value}"


_TLS_VERSION_NAMES = {
    ssl.TLSVersion.TLSv1: "TLS 1.0",
    ssl.TLSVersion.TLSv1_1: "TLS 1.1",
    ssl.TLSVersion.TLSv1_2: "TLS 1.2",
    ssl.TLSVersion.TLSv1_3: "TLS 1.3",
}


def tls_facts(profile: TLSProfile) -> tuple[list[str], list[str]]:
    """(versions, refusals) of ``profile`` read from the context :mod:`dicomwire.ul.tls`
    builds for it: the TLS versions it negotiates and what it turns off."""
    context = profile_context(profile)
    versions = [
        name
        for version, name in _TLS_VERSION_NAMES.items()
        if context.minimum_version <= version <= context.maximum_version
    ]
    refusals = [
        what
        for option, what in (
            (ssl.OP_NO_COMPRESSION, "no compression"),
            (ssl.OP_NO_RENEGOTIATION, "no renegotiation"),
            (ssl.OP_CIPHER_SERVER_PREFERENCE, "the acceptor's cipher preference"),
        )
        if context.options & option
    ]
    return versions, refusals


def build_statement(node: Node) -> Document:
    """The conformance statement of ``node`` (its services and configuration)."""
    config = node.config
    services = node.services
    bindings = merge_bindings(services)
    doc = Document(f"dicomwire {__version__} DICOM Conformance Statement")
    doc.paragraph(
        "Generated by `dicomwire conformance-statement` from the node's services, its "
        "configuration and the engine's constants (PS3.2 Annex A form). Do not edit by hand."
    )

    # 1 overview / 2 implementation model
    doc.heading(1, "1 Implementation model")
    doc.paragraph(
        "dicomwire is one asyncio process (or `workers` processes sharing the ports) that "
        "accepts associations for every AE title of the node and serves them with the "
        "services below; the same engine's tools and API initiate associations as SCU."
    )
    doc.table(
        ["Application Entity", "Port", "TLS port", "Role"],
        [
            [title, str(config.port), str(config.tls_port or "(TLS not configured)"), "SCP/SCU"]
            for title in config.ae_titles
        ],
    )
    doc.heading(2, "1.1 Services of the node")
    doc.table(
        ["Service", "Configuration table"],
        [[s.name, f"[{s.section}]" if s.section else "(none)"] for s in services],
    )

    running = {s.section for s in services}
    optional = [f"{n} ([{n}])" for n in SERVICE_TYPES if n not in running]
    if optional:
        doc.paragraph(
            "Served when their table is in the configuration (not in this node): "
            + ", ".join(optional)
            + "."
        )

    # 3 SOP classes
    doc.heading(1, "2 SOP classes")
    scp_rows = []
    for uid, binding in bindings.items():
        if not binding.handlers and binding.requestor_may_be_scp:
            continue
        commands = ", ".join(_COMMANDS.get(c, f"{c:04X}") for c in sorted(binding.handlers))
        name = "Any abstract syntax (promiscuous)" if uid == ANY_SOP_CLASS else _uid_name(uid)
        scp_rows.append([name, uid, "SCP", commands])
    doc.paragraph(f"The node is SCP of {len(scp_rows)} SOP classes:")
    doc.table(["SOP Class", "UID", "Role", "Commands served"], scp_rows)
    doc.heading(2, "2.1 SCU activities")
    doc.table(
        ["Real-world activity", "Tools and API", "SOP classes", "Requests"],
        [[a.name, a.tools, _activity_classes(a), a.commands] for a in SCU_ACTIVITIES],
    )

    # 4 association policies
    policy = node.policy
    doc.heading(1, "3 Association policies")
    doc.table(
        ["Policy", "Value"],
        [
            ["Application context name", DICOM_APPLICATION_CONTEXT],
            ["Implementation class UID", IMPLEMENTATION_CLASS_UID],
            ["Implementation version name", IMPLEMENTATION_VERSION_NAME],
            ["Maximum PDU length received", f"{policy.max_pdu_length} bytes"],
            [
                "Simultaneous associations accepted",
                f"{config.max_associations} per worker process, {config.workers} worker(s)",
            ],
            [
                "Asynchronous operations window (acceptor)",
                f"up to {policy.maximum_invoked} invoked, {policy.maximum_performed} performed",
            ],
            [
                "Called AE titles",
                "any (promiscuous)" if policy.promiscuous else ", ".join(policy.ae_titles),
            ],
            [
                "Calling AE titles",
                "restricted to known nodes" if policy.known_nodes else "any non-empty",
            ],
            ["SCP/SCU role selection", "accepted for the SOP classes listed in 4.2"],
        ],
    )
    doc.heading(2, "3.1 Association acceptance")
    doc.paragraph(
        "Each association is served by one asyncio task; DIMSE requests on it are handled "
        "concurrently up to the agreed window; the requestor releases it. Rejections and "
        "aborts: see section 6."
    )
    doc.heading(2, "3.2 Association initiation")
    doc.paragraph(
        "The node initiates associations for C-MOVE sub-operations (to the destination in "
        "[[nodes]]), storage commitment reports (N-EVENT-REPORT) and the MPPS relay; the "
        "tools for each activity of 2.1. A requestor proposes the asynchronous window only "
        "when asked (`Client(window=...)`), else operations are synchronous."
    )

    # 5 presentation contexts
    doc.heading(1, "4 Presentation contexts accepted")
    groups: dict[tuple[str, ...], list[str]] = {}
    for uid, binding in bindings.items():
        if binding.handlers:
            groups.setdefault(tuple(binding.transfer_syntaxes), []).append(uid)
    storage = set(storage_sop_classes())
    rows = []
    for syntaxes, uids in groups.items():
        stored = [u for u in uids if u in storage]
        named = [
            _uid_name(u) if u != ANY_SOP_CLASS else "any other" for u in uids if u not in storage
        ]
        if stored:
            named.insert(0, f"the {len(stored)} storage SOP classes of section 2")
        rows.append([", ".join(named), _syntaxes(syntaxes), "SCP"])
    doc.table(["Abstract syntaxes", "Transfer syntaxes (in preference order)", "Role"], rows)
    doc.paragraph(
        "The first of the node's transfer syntaxes the requestor proposes is chosen. "
        "Contexts not accepted are answered with result "
        + ", ".join(
            f"{r.value} ({r.name.lower().replace('_', ' ')})"
            for r in list(PresentationContextResult)[1:]
        )
        + "."
    )
    doc.heading(2, "4.1 Extended negotiation")
    extended = sorted(u for u, b in bindings.items() if b.extended_negotiation is not None)
    doc.paragraph(
        "SOP Class Extended Negotiation (PS3.7 D.3.3.5) is answered for "
        f"{len(extended)} SOP classes (relational queries and retrieves, PS3.4 C.5.1.1):"
    )
    doc.bullets(f"{_uid_name(u)} ({u})" for u in extended)
    doc.heading(2, "4.2 SCP/SCU role selection")
    scp_role = [u for u, b in bindings.items() if b.requestor_may_be_scp]
    doc.paragraph(
        f"The requestor may take the SCP role for {len(scp_role)} SOP classes (the storage "
        "classes, for the C-STOREs of C-GET); for any other the proposal's SCP role is "
        "answered 0."
    )
    doc.heading(2, "4.3 Presentation contexts proposed as SCU")
    doc.paragraph(
        "Storage: one context per (SOP class, transfer syntax) of the files sent, plus one "
        "per SOP class offering Explicit and Implicit VR Little Endian to convert to. "
        f"Every other SOP class: {_syntaxes(DEFAULT_TRANSFER_SYNTAXES)}."
    )

    # 6 SOP specific conformance
    doc.heading(1, "5 SOP-specific conformance")
    number = 0
    for service in services:
        if not service.statuses:
            continue
        number += 1
        doc.heading(2, f"5.{number} {service.name} (SCP)")
        first = next((b.sop_class_uid for b in service.bindings() if b.handlers), None)
        service_class = first if first and first != ANY_SOP_CLASS else None
        for command, declared in service.statuses.items():
            doc.paragraph(f"{command} statuses sent:")
            doc.table(
                ["Status", "Category", "Meaning", "When"],
                _status_rows(declared, service_class),
            )
    number += 1
    doc.heading(2, f"5.{number} Any SOP class (DIMSE session)")
    doc.table(["Status", "Category", "Meaning", "When"], _status_rows(SESSION_STATUSES, None))
    number += 1
    doc.heading(2, f"5.{number} Statuses received (SCU)")
    doc.paragraph(
        "How each SCU activity of 2.1 reacts to the statuses it receives (declared beside "
        "the code that acts on them; a status no row lists is treated as its category's "
        "row):"
    )
    for activity in SCU_ACTIVITIES:
        doc.paragraph(f"{activity.name} ({activity.commands}):")
        doc.table(
            ["Status received", "Category", "Reaction"],
            [[_received(r, activity), r.category.value, r.reaction] for r in activity.received],
        )

    # 7 rejections
    doc.heading(1, "6 Association rejection and abort")
    doc.table(
        ["Result", "Source", "Reason/Diag.", "When"],
        [
            [
                f"{r.result.value} ({r.result.name.lower()})",
                f"{r.source.value} ({r.source.name.lower()})",
                f"{r.reason.value} ({r.reason.name.lower()})",
                r.when,
            ]
            for r in REJECTIONS
        ],
    )
    doc.paragraph("A-ABORT sent:")
    doc.table(
        ["Source", "Reason/Diag.", "When"],
        [
            [
                f"{a.source.value} ({a.source.name.lower()})",
                f"{int(a.reason)} ({AbortReason(a.reason).name.lower()})"
                if a.source is AbortSource.SERVICE_PROVIDER
                else f"{int(a.reason)}",
                a.when,
            ]
            for a in ABORTS
        ],
    )

    # 8 communication profiles
    doc.heading(1, "7 Communication profiles")
    doc.paragraph(
        "DICOM Upper Layer over TCP/IP (PS3.8), IPv4 and IPv6; "
        f"port {config.port}"
        + (f", TLS on port {config.tls_port}" if config.tls_port else "")
        + ". TCP_NODELAY is set."
    )
    doc.heading(2, "7.1 Secure transport connection profiles (PS3.15 Annex B)")
    default_tls = TLSConfig()
    doc.paragraph(
        f"The profile is [tls] profile (default {default_tls.profile.value}); a peer that "
        "offers less than a profile's versions and suites fails the handshake (no fallback "
        "to a weaker version or to plain TCP). Handshake timeout "
        f"{default_tls.handshake_timeout:g} s."
    )
    rows = []
    for profile in TLSProfile:
        versions, refusals = tls_facts(profile)
        rows.append(
            [
                profile.value,
                ", ".join(versions),
                ", ".join(PROFILE_CIPHERS[profile]),
                ", ".join(refusals),
            ]
        )
    doc.table(
        [
            "Profile",
            "TLS versions",
            "TLS 1.2 cipher suites (OpenSSL names, preference order)",
            "Also",
        ],
        rows,
    )

    # 9 configuration
    doc.heading(1, "8 Configuration")
    doc.paragraph("Keys of the node's TOML file (`dicomwire serve --config`) and defaults.")
    headers = ["Key", "Default", "Meaning"]
    doc.heading(2, "8.1 Top level")
    doc.table(headers, _config_rows(NodeConfig, ("storage", "sections", "timeouts", "tls")))
    tables: list[tuple[str, type[Any]]] = [
        ("[timeouts] (seconds; 0 disables)", Timeouts),
        ("[tls]", TLSConfig),
        ("[storage]", StorageConfig),
        ("[[known_nodes]]", KnownNode),
        ("[[nodes]]", RemoteAE),
    ]
    tables += [
        (f"[{name}]", kind.config_type)
        for name, kind in SERVICE_TYPES.items()
        if name != "storage" and kind.config_type is not None
    ]
    for number, (title, kind) in enumerate(tables, start=2):
        doc.heading(2, f"8.{number} {title}")
        doc.table(headers, _config_rows(kind, ("on_stored",)))

    # 10 character sets, security
    doc.heading(1, "9 Character sets")
    doc.paragraph(
        "Stored instances are kept byte for byte. Query and worklist identifiers are "
        "decoded in their Specific Character Set (0008,0005); worklist answers are encoded in "
        "the query's character set when every value fits, else the entry's own. Defined "
        "terms understood:"
    )
    doc.paragraph(", ".join(_character_sets()))
    doc.heading(1, "10 Security")
    doc.bullets(
        [
            "TLS (section 7.1) with mutual authentication when [tls] "
            f"require_peer_certificate (default {TLSConfig().require_peer_certificate}).",
            "Callers restricted by [[known_nodes]] (AE title and host) or [[nodes]] with "
            "restrict_callers; the called AE title must be one of ae_titles.",
            "Every rejected association, abort and failure status is logged with its reason.",
        ]
    )
    doc.heading(2, "10.1 Audit trail (PS3.15 A.5, A.6)")
    audit = AuditConfig()
    doc.paragraph(
        "DICOM audit messages (PS3.15 A.5.1, PS3.16 codes) as RFC 5424 syslog messages "
        f"(facility {FACILITY}, MSGID {MSGID}): to a local rotating file by default ("
        f"{', '.join(audit.destinations)} = <storage root>/.dicomwire/audit.log, "
        f"{audit.max_file_bytes} bytes, {audit.file_backups} backups), SYSLOG-TLS "
        "(RFC 5425) and SYSLOG-UDP (RFC 5426) as [audit] destinations. Never blocking: "
        f"at most {audit.queue_size} messages queued per destination, SYSLOG-TLS ones "
        f"spooled on disk (up to {audit.spool_limit}); beyond, drops are counted and logged. "
        "Events the node records:"
    )
    doc.table(
        ["Event", "Type or action", "When"],
        [[f"{e.event.text} ({e.event.code})", e.detail, e.when] for e in NODE_EVENTS],
    )
    return doc


def conformance_statement(config: NodeConfig | None = None, format: Format = "markdown") -> str:
    """The statement of the node ``config`` describes (the default node if None)."""
    node = Node(config or NodeConfig())
    document = build_statement(node)
    return render_html(document) if format == "html" else render_markdown(document)

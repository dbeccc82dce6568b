"""Services as units of a node (PS3.4 service classes; PS3.7 §9-§10 operations they serve).

A :class:`Service` declares, in one list of :class:`Binding` objects, every SOP class it
serves: the transfer syntaxes it accepts for it, the roles it lets a requestor take (PS3.7
Annex D.3.3.4 role selection), and the handler for each DIMSE request (C-STORE, C-FIND,
N-ACTION...). A :class:`~dicomwire.services.node.Node` is a list of services; its
acceptance policy and its handler table are both derived from these bindings, so a SOP
class is accepted exactly when something handles it. A service may also name a TOML
section (``section`` and ``config_type``) that the node's configuration loader reads,
validates and hands back to it, and it may run background work (``start``/``stop``).

A service is testable without sockets: ``service.handler_table()`` is what the DIMSE
session calls with each :class:`~dicomwire.dimse.session.Request`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..dimse.commands import CommandField
from ..dimse.session import DimseSession, Handler, SinkFactory
from ..dimse.status import Category, Status
from ..errors import ConfigError
from ..records import FrozenRecord
from ..ul.negotiation import DEFAULT_TRANSFER_SYNTAXES

if TYPE_CHECKING:
    from .node import Node

__all__ = [
    "ANY_SOP_CLASS",
    "Binding",
    "ScuActivity",
    "StatusDeclaration",
    "StatusReaction",
    "StatusTable",
    "CustomService",
    "HandlerKey",
    "Service",
    "merge_bindings",
]

#: A binding for this "SOP class" serves any abstract syntax (promiscuous storage).
ANY_SOP_CLASS = "*"

HandlerKey = int | tuple[str, int]


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Binding(FrozenRecord):
    """One SOP class a service serves: transfer syntaxes, handlers, and roles.

    ``handlers`` maps a request's command field (``CommandField.C_FIND_RQ``...) to the
    handler that answers it. ``requestor_may_be_scp`` accepts the requestor's proposal to
    be the SCP of this class (role selection: C-GET's C-STOREs, storage commitment
    reports on the same association). ``sop_class_uid`` :data:`ANY_SOP_CLASS` serves any
    abstract syntax the node is asked for (``transfer_syntaxes`` then applies to all).
    ``extended_negotiation`` answers the requestor's SOP Class Extended Negotiation
    sub-item for this class (PS3.7 D.3.3.5; e.g. relational queries, PS3.4 C.5.1.1):
    its service-class application information in, the reply's out (None: no reply).
    """

    sop_class_uid: str
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES
    handlers: Mapping[int, Handler] = field(default_factory=dict)
    requestor_may_be_scp: bool = False
    extended_negotiation: Callable[[bytes], bytes | None] | None = None


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class StatusDeclaration(FrozenRecord):
    """A status a service's handler can answer, and when (its conformance statement row).

    ``status`` is the named constant the handler returns (``dimse.status`` or the
    service module's own), so the statement lists only what the code sends.
    """

    status: int
    when: str


#: Statuses by DIMSE command name ("C-STORE", "N-ACTION"...).
StatusTable = Mapping[str, Sequence[StatusDeclaration]]


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class StatusReaction(FrozenRecord):
    """How an SCU reacts to statuses it receives (a conformance statement row, PS3.2).

    Declared beside the SCU code that acts on the status. ``codes`` are statuses or
    inclusive ``(first, last)`` ranges; empty, the row is every status of ``category``
    that no row with codes of the same activity lists.
    """

    category: Category
    reaction: str
    codes: tuple[int | tuple[int, int], ...] = ()

    def lists(self, status: int) -> bool:
        """Whether ``status`` is one of this row's ``codes``."""
        return any(
            code[0] <= status <= code[1] if isinstance(code, tuple) else code == status
            for code in self.codes
        )


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ScuActivity(FrozenRecord):
    """A real-world activity the tools and the API perform as SCU, and their reactions."""

    name: str
    #: The tools and API functions that perform it.
    tools: str
    #: The SOP classes proposed (the code's own constants).
    sop_classes: tuple[str, ...]
    #: The DIMSE requests sent ("C-FIND", "N-CREATE, N-SET"...).
    commands: str
    received: tuple[StatusReaction, ...]

    def reaction(self, status: int) -> StatusReaction:
        """The row that says what is done on receiving ``status`` (KeyError: none)."""
        for row in self.received:
            if row.lists(status):
                return row
        category = Status(status).category
        for row in self.received:
            if not row.codes and row.category is category:
                return row
        raise KeyError(f"{self.name}: no reaction declared for {status:04X}")


class Service:
    """A unit of a node: what it serves (:meth:`bindings`), its configuration, its life.

    Subclasses override :meth:`bindings`; the rest is optional:

    - ``name``: how logs, the CLI and ``[[nodes]] services`` refer to it;
    - ``section`` / ``config_type``: the TOML table (e.g. ``[storage]``) and the dataclass
      it is read into (every key checked against the dataclass's fields and types);
    - :meth:`sinks`: where request data sets go, per association (memory by default);
    - :meth:`start` / :meth:`stop`: background work bound to the node's life.
    """

    name: ClassVar[str] = "service"
    section: ClassVar[str | None] = None
    config_type: ClassVar[type[Any] | None] = None
    #: Statuses each DIMSE command's handler can answer ("C-STORE": [...]), PS3.2 A.4.
    statuses: ClassVar[StatusTable] = {}

    def bindings(self) -> Sequence[Binding]:
        """The SOP classes served, with their transfer syntaxes and handlers."""
        raise NotImplementedError

    def sinks(self, session: DimseSession) -> Mapping[HandlerKey, SinkFactory]:
        """Sink factories for this association's request data sets (none: in memory)."""
        return {}

    async def start(self, node: Node) -> None:
        """Called once the node listens (open databases, start workers)."""

    async def stop(self) -> None:
        """Called when the node shuts down, after the last association ended."""

    def handler_table(self) -> dict[HandlerKey, Handler]:
        """Handlers keyed as the DIMSE session looks them up: (SOP class, command field)."""
        table: dict[HandlerKey, Handler] = {}
        for binding in self.bindings():
            for command_field, handler in binding.handlers.items():
                key: HandlerKey = (
                    command_field
                    if binding.sop_class_uid == ANY_SOP_CLASS
                    else (binding.sop_class_uid, command_field)
                )
                table[key] = handler
        return table


class CustomService(Service):
    """A service made of handlers, for the SCP a user writes in a few lines.

    ``CustomService({FIND_UID: {CommandField.C_FIND_RQ: on_find}})`` serves C-FIND of that
    SOP class with ``on_find``; ``transfer_syntaxes`` applies to every class given.
    """

    name = "custom"

    def __init__(
        self,
        handlers: Mapping[str, Mapping[int, Handler]],
        *,
        transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
        requestor_may_be_scp: Iterable[str] = (),
    ) -> None:
        scp_role = frozenset(requestor_may_be_scp)
        self._bindings = [
            Binding(uid, tuple(transfer_syntaxes), dict(table), uid in scp_role)
            for uid, table in handlers.items()
        ]
        for binding in self._bindings:
            for command_field in binding.handlers:
                if command_field not in CommandField._value2member_map_ or command_field & 0x8000:
                    raise ConfigError(
                        f"handler for {binding.sop_class_uid}: 0x{command_field:04X} is not a "
                        "DIMSE request command field"
                    )

    def bindings(self) -> Sequence[Binding]:
        return self._bindings


def merge_bindings(services: Iterable[Service]) -> dict[str, Binding]:
    """Every service's bindings by SOP class; a SOP class served twice is a ConfigError.

    Two services may serve the same SOP class only for different commands (e.g. one
    handles its C-FIND, another its C-MOVE): their handlers are merged, their transfer
    syntaxes must then agree. A binding without handlers (one that only lets the
    requestor take the SCP role, as C-GET needs for storage classes) takes the other's.
    """
    merged: dict[str, Binding] = {}
    owner: dict[tuple[str, int], str] = {}
    for service in services:
        for binding in service.bindings():
            uid = binding.sop_class_uid
            for command_field in binding.handlers:
                previous = owner.get((uid, command_field))
                if previous is not None:
                    raise ConfigError(
                        f"services {previous!r} and {service.name!r} both handle "
                        f"0x{command_field:04X} for {uid}"
                    )
                owner[(uid, command_field)] = service.name
            existing = merged.get(uid)
            if existing is None:
                merged[uid] = binding
                continue
            syntaxes = existing.transfer_syntaxes
            if not existing.handlers:  # a binding without handlers only adds roles
                syntaxes = binding.transfer_syntaxes
            elif binding.handlers and tuple(syntaxes) != tuple(binding.transfer_syntaxes):
                raise ConfigError(
                    f"services disagree on the transfer syntaxes of {uid}: "
                    f"{list(existing.transfer_syntaxes)} vs {list(binding.transfer_syntaxes)}"
                )
            merged[uid] = Binding(
                uid,
                syntaxes,
                {**existing.handlers, **binding.handlers},
                existing.requestor_may_be_scp or binding.requestor_may_be_scp,
                existing.extended_negotiation or binding.extended_negotiation,
            )
    return merged

"""The public SCU API: one association, every DIMSE service, in a few obvious lines.

PS3.7 §9 (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, C-CANCEL) and §10 (N-EVENT-REPORT,
N-GET, N-SET, N-ACTION, N-CREATE, N-DELETE) as methods of :class:`Client`, over the
service classes of PS3.4 (Annex A verification, B storage, C query/retrieve, K worklist,
F MPPS, J storage commitment, H print)::

    async with dicomwire.connect("pacs", 104, called_ae="PACS", services=["find"]) as assoc:
        async for match in assoc.find({"PatientID": "123", "StudyInstanceUID": ""}):
            print(match.StudyInstanceUID)

``connect`` proposes presentation contexts from what the association is for: named
``services`` (or SOP class UIDs), the files or data sets it will send (``sending``: one
context per SOP class and transfer syntax, plus uncompressed fallbacks, as
``dicomwire store`` does), and for C-GET the storage SOP classes it will receive with the
SCP role (``receive``). It works with ``await`` and with ``async with``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..aio import Opening
from ..dimse.commands import CommandField
from ..dimse.datasets import build_dataset, encode_dataset, encode_identifier
from ..dimse.primitives import (
    CEchoRQ,
    CFindRQ,
    CGetRQ,
    CMoveRQ,
    NActionRQ,
    NCreateRQ,
    NDeleteRQ,
    NEventReportRQ,
    NGetRQ,
    NSetRQ,
    Priority,
)
from ..dimse.session import DimseSession, Handler, Operation, ReceivedMessage
from ..dimse.status import Category, Status
from ..errors import DimseStatusError, LocalProtocolError
from ..uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
)
from ..ul.association import Timeouts
from ..ul.association import connect as associate
from ..ul.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    DEFAULT_TRANSFER_SYNTAXES,
    NegotiatedAssociation,
    PresentationContext,
    RequestorConfig,
)
from ..ul.tls import TLSConfig
from .part10 import FileInfo
from .qr.models import QUERY_MODELS
from .service import ScuActivity, StatusReaction
from .storage import (
    MAX_CONTEXTS,
    STORAGE_TRANSFER_SYNTAXES,
    StorageConfig,
    StorageSCP,
    inspect_file,
    plan_contexts,
    store_dataset,
    store_file,
)

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "COMMON_STORAGE_SOP_CLASSES",
    "ECHO_ACTIVITY",
    "FIND_REACTIONS",
    "QUERY_ACTIVITY",
    "QUERY_MODELS",
    "RETRIEVE_ACTIVITY",
    "STORE_ACTIVITY",
    "FindResponses",
    "SERVICE_SOP_CLASSES",
    "Client",
    "NResult",
    "RetrieveResult",
    "connect",
    "propose_contexts",
    "storage_classes_for",
]

log = logging.getLogger("dicomwire.services.client")


#: What each named service proposes (abstract syntaxes), for ``connect(services=...)``.
SERVICE_SOP_CLASSES: dict[str, tuple[str, ...]] = {
    "verification": (VERIFICATION_SOP_CLASS,),
    "find": (QUERY_MODELS[("patient", "find")], QUERY_MODELS[("study", "find")]),
    "move": (QUERY_MODELS[("patient", "move")], QUERY_MODELS[("study", "move")]),
    "get": (QUERY_MODELS[("patient", "get")], QUERY_MODELS[("study", "get")]),
    "worklist": (QUERY_MODELS[("worklist", "find")],),
    "mpps": ("1.2.840.10008.3.1.2.3.3",),
    "storage-commitment": ("1.2.840.10008.1.20.1",),
    "print": ("1.2.840.10008.5.1.1.9",),
    "print-color": ("1.2.840.10008.5.1.1.18",),
}

# What the SCU code below does with each status it receives (conformance statement, PS3.2;
# tests/services/test_conformance_reactions.py drives every row against a peer).

#: C-ECHO: Client.echo returns the status; ``dicomwire echo`` judges it.
ECHO_ACTIVITY = ScuActivity(
    "Verify a peer",
    "dicomwire echo; Client.echo",
    SERVICE_SOP_CLASSES["verification"],
    "C-ECHO",
    (
        StatusReaction(Category.SUCCESS, "the peer is verified; echo exits 0"),
        *(
            StatusReaction(
                category, "Client.echo returns it; echo prints it with its meaning, exits 1"
            )
            for category in (Category.WARNING, Category.FAILURE)
        ),
    ),
)

#: C-FIND (FindResponses, _raise_for): the same for Q/R and worklist queries.
FIND_REACTIONS: tuple[StatusReaction, ...] = (
    StatusReaction(
        Category.PENDING,
        "a match (FF01 too: an optional key the peer does not support): yielded by "
        "Client.find, printed by find",
    ),
    StatusReaction(Category.SUCCESS, "the query is complete; find exits 0"),
    StatusReaction(Category.WARNING, "logged; the query is taken as complete; find exits 0"),
    StatusReaction(
        Category.CANCEL, "the query ended early: the matches received are kept; find exits 0"
    ),
    StatusReaction(
        Category.FAILURE,
        "Client.find raises DimseStatusError (status, Error Comment) after the matches "
        "received; find prints them, then the status, and exits 1",
    ),
)

QUERY_ACTIVITY = ScuActivity(
    "Query a peer",
    "dicomwire find; Client.find",
    SERVICE_SOP_CLASSES["find"],
    "C-FIND",
    FIND_REACTIONS,
)

#: C-MOVE/C-GET (Client._retrieve, cli.query._report).
RETRIEVE_ACTIVITY = ScuActivity(
    "Retrieve from a peer",
    "dicomwire move / get; Client.move / Client.get",
    SERVICE_SOP_CLASSES["move"] + SERVICE_SOP_CLASSES["get"],
    "C-MOVE, C-GET",
    (
        StatusReaction(
            Category.PENDING,
            "progress: the remaining/completed/failed/warning counts go to the progress callback",
        ),
        StatusReaction(Category.SUCCESS, "every sub-operation done; move/get exit 0"),
        StatusReaction(
            Category.WARNING,
            "done with failed or warned sub-operations: the counts and the Failed SOP "
            "Instance UID List are returned (each failed UID printed); move/get exit 1",
        ),
        StatusReaction(Category.CANCEL, "stopped: the counts so far are returned; move/get exit 1"),
        StatusReaction(
            Category.FAILURE,
            "refused outright (no sub-operation counted): Client.move/get raise "
            "DimseStatusError; after sub-operations: the counts and failed UIDs are "
            "returned; move/get exit 1",
        ),
    ),
)

#: C-STORE (storage.scu's retry rule, FileOutcome, cli.store's exit status).
STORE_ACTIVITY = ScuActivity(
    "Send instances",
    "dicomwire store; Client.store; store_files",
    (),  # every storage SOP class: the statement names them
    "C-STORE",
    (
        StatusReaction(Category.SUCCESS, "stored: counted sent"),
        StatusReaction(
            Category.WARNING,
            "stored, counted as a warning (a `warning:` line with its meaning); not sent "
            "again; store exits 0",
        ),
        StatusReaction(
            Category.FAILURE,
            "out of resources: store_files sends the file again (a new association if "
            "needed) until it had --retries + 1 attempts; then failed, store exits 1",
            ((0xA700, 0xA7FF),),
        ),
        StatusReaction(
            Category.FAILURE,
            "refused: not sent again; a `failed:` line with its meaning and Error Comment; "
            "store exits 1 (Client.store returns the status)",
        ),
    ),
)


#: Storage SOP classes proposed with the SCP role for C-GET when ``receive`` is not given:
#: the common image, structured report and RT objects (PS3.4 Table B.5-1).
COMMON_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG Waveform
)


@dataclass(slots=True)
class RetrieveResult:
    """The outcome of a C-MOVE or C-GET (PS3.4 C.4.2.1.4, C.4.3.1.3).

    The sub-operation counts come from the final response (or the last pending one when
    the SCP leaves them out of the final, as PS3.4 allows); ``failed_instances`` is the
    Failed SOP Instance UID List (0008,0058) of the final response's identifier.
    """

    status: Status
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_instances: list[str] = field(default_factory=list)
    error_comment: str | None = None

    @property
    def ok(self) -> bool:
        return self.status.is_success


@dataclass(slots=True)
class NResult:
    """The outcome of a DIMSE-N request: status, the returned data set, the response."""

    status: Status
    dataset: Dataset | None = None
    affected_sop_instance_uid: str | None = None
    error_comment: str | None = None


def _sop_classes_for(entry: str) -> tuple[str, ...]:
    found = SERVICE_SOP_CLASSES.get(entry)
    if found is not None:
        return found
    if entry and entry[0].isdigit():
        return (entry,)  # a SOP class UID given as it is
    raise LocalProtocolError(
        f"unknown service {entry!r}: use a SOP class UID or one of "
        + ", ".join(sorted(SERVICE_SOP_CLASSES))
    )


def _sending_infos(sending: Iterable[str | Path | Dataset]) -> list[FileInfo]:
    """What will be sent, as file infos (SOP class, transfer syntax) to plan contexts from."""
    infos: list[FileInfo] = []
    for item in sending:
        if isinstance(item, str | Path):
            infos.append(inspect_file(item))
            continue
        meta = getattr(item, "file_meta", None)
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or EXPLICIT_VR_LITTLE_ENDIAN)
        infos.append(
            FileInfo(Path(), str(item.SOPClassUID), str(item.SOPInstanceUID), syntax, 0, 0)
        )
    return infos


def propose_contexts(
    services: Iterable[str],
    sending: Iterable[str | Path | Dataset] = (),
    receive: Iterable[str] = (),
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
) -> tuple[list[tuple[str, list[str]]], dict[str, tuple[bool, bool]]]:
    """The presentation contexts and role proposals for ``connect``'s arguments.

    At most 128 contexts fit an A-ASSOCIATE-RQ (PS3.8 §9.3.2.2, MAX_CONTEXTS): more raise
    LocalProtocolError saying which argument to trim.
    """
    contexts: list[tuple[str, list[str]]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()

    def add(abstract: str, syntaxes: Sequence[str]) -> None:
        key = (abstract, tuple(syntaxes))
        if key not in seen:
            seen.add(key)
            contexts.append((abstract, list(syntaxes)))

    for entry in services:
        for uid in _sop_classes_for(entry):
            add(uid, transfer_syntaxes)
    infos = _sending_infos(sending)
    for abstract, syntaxes in plan_contexts(infos):
        add(abstract, syntaxes)
    roles: dict[str, tuple[bool, bool]] = {}
    for uid in receive:
        add(uid, STORAGE_TRANSFER_SYNTAXES)
        roles[uid] = (False, True)  # C-GET: we are the storage SCP (PS3.7 D.3.3.4)
    if len(contexts) > MAX_CONTEXTS:
        raise LocalProtocolError(_overflow_message(len(contexts), len(roles)))
    return contexts, roles


def _overflow_message(needed: int, receiving: int) -> str:
    """Why an association cannot be proposed: PS3.8 §9.3.2.2 allows 128 contexts."""
    text = (
        f"{needed} presentation contexts needed, but an A-ASSOCIATE-RQ carries at most "
        f"{MAX_CONTEXTS} (PS3.8 9.3.2.2: context IDs are the odd numbers 1-255)"
    )
    if receiving:
        return (
            f"{text}; {receiving} of them are storage SOP classes to receive by C-GET "
            "(one context each, SCP role). Retrieve in parts: narrow the query (one series, "
            "one modality) or give fewer SOP classes per association ('receive', "
            "--sop-class), or use C-MOVE, which has no such limit on the requestor"
        )
    return f"{text}: send fewer SOP classes per association (split 'sending')"


def connect(
    host: str,
    port: int,
    *,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "DICOMWIRE",
    services: Iterable[str] = ("verification",),
    sending: Iterable[str | Path | Dataset] = (),
    receive: Iterable[str] | None = None,
    handlers: Mapping[int | tuple[str, int], Handler] | None = None,
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    window: int = 1,
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
    relational: bool = False,
) -> Opening[Client]:
    """Open an association as SCU; ``await`` it, or use it with ``async with``.

    ``services`` names what the association is for (``"verification"``, ``"find"``,
    ``"move"``, ``"get"``, ``"worklist"``, ``"mpps"``, ``"storage-commitment"``,
    ``"print"``, ``"print-color"``) or gives SOP class UIDs; ``sending`` lists the files
    or data sets to be stored (their SOP classes and transfer syntaxes are proposed);
    ``receive`` the storage SOP classes to accept C-STOREs for during C-GET (default:
    the common ones when ``"get"`` is among the services). ``handlers`` answer requests
    the peer sends on this association (N-EVENT-REPORT of storage commitment or print),
    keyed by command field or (SOP class, command field). ``window`` > 1 proposes an
    asynchronous operations window. ``relational`` asks for relational queries and
    retrieves on the Q/R contexts (extended negotiation, PS3.4 C.5.1.1); whether the peer
    agreed is in ``client.relational(model, operation)``.

    Raises :class:`~dicomwire.errors.AssociationRejected`,
    :class:`~dicomwire.errors.AssociationAborted`, :class:`~dicomwire.errors.TLSError`,
    :class:`~dicomwire.errors.DicomTimeoutError` or
    :class:`~dicomwire.errors.TransportError`.
    """
    services = list(services)
    if receive is None:
        receive = COMMON_STORAGE_SOP_CLASSES if "get" in services else ()
    contexts, roles = propose_contexts(services, sending, receive)
    extended: dict[str, bytes] = {}
    if relational:
        query_classes = set(QUERY_MODELS.values())
        extended = {uid: b"\x01" for uid, _ in contexts if uid in query_classes}
    config = RequestorConfig(
        calling_ae,
        called_ae,
        contexts,
        max_pdu_length=max_pdu_length,
        maximum_invoked=window if window != 1 else None,
        maximum_performed=1 if window != 1 else None,
        roles=roles,
        extended_negotiation=extended,
    )

    async def open_client() -> Client:
        association = await associate(host, port, config, timeouts=timeouts, tls=tls)
        session = DimseSession(association, handlers=handlers, timeouts=timeouts)
        session.start()
        return Client(session)

    async def close(client: Client, exc: BaseException | None) -> None:
        await client.__aexit__(type(exc) if exc else None, exc, None)

    return Opening(open_client(), close)


class Client:
    """An established association used as SCU (get one from :func:`connect`).

    Every method sends on the presentation context the peer accepted for the SOP class
    involved; a SOP class it did not accept raises
    :class:`~dicomwire.errors.NoAcceptedContextError` before anything is sent.
    """

    def __init__(self, session: DimseSession) -> None:
        self.session = session
        self._queries: set[Operation] = set()

    @property
    def negotiated(self) -> NegotiatedAssociation:
        """What the association agreed on (contexts, roles, window, the peer's limits)."""
        return self.session.negotiated

    def accepts(self, sop_class_uid: str) -> bool:
        """True when the peer accepted a context for ``sop_class_uid``."""
        return self.session.negotiated.find_context(sop_class_uid) is not None

    # -- verification, storage ---------------------------------------------------

    async def echo(self) -> Status:
        """C-ECHO (PS3.7 §9.1.5): the response status (0000 when the peer is there)."""
        operation = await self.session.send(CEchoRQ())
        return (await operation.wait()).status

    async def store(
        self,
        item: str | Path | Dataset | bytes,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        transfer_syntax: str | None = None,
    ) -> Status:
        """C-STORE one file (streamed from disk), pydicom Dataset or raw data set.

        A file is sent in its own transfer syntax, converted between uncompressed ones
        when only another was accepted; raw bytes need the three UIDs. Returns the status
        (warnings included); a failure status is returned too, not raised, as a store of
        many files wants to go on.
        """
        if isinstance(item, str | Path):
            return await store_file(self.session, inspect_file(item))
        return await store_dataset(
            self.session,
            item,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
        )

    # -- query / retrieve -----------------------------------------------------------

    def _model(self, model: str, operation: str) -> str:
        if model and model[0].isdigit():
            return model
        uid = QUERY_MODELS.get((model, operation))
        if uid is None:
            models = sorted({m for m, op in QUERY_MODELS if op == operation})
            raise LocalProtocolError(
                f"no {operation.upper()} model {model!r}: use a SOP class UID or one of "
                + ", ".join(models)
            )
        return uid

    def _context(self, sop_class_uid: str) -> PresentationContext:
        return self.session.find_context(sop_class_uid)

    def _identifier(
        self, query: Dataset | Mapping[str, object], context: PresentationContext
    ) -> bytes:
        return encode_identifier(query, context.transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN)

    def find(
        self,
        query: Dataset | Mapping[str, object],
        *,
        model: str = "study",
        priority: Priority = Priority.MEDIUM,
        cancel_after: int | None = None,
    ) -> FindResponses:
        """C-FIND (PS3.4 C.4.1, K.4): each match as a pydicom Dataset, as it arrives.

        ``query`` is a Dataset or ``{keyword: value}`` (``""`` asks for a return key);
        ``model`` is ``"patient"``, ``"study"``, ``"patient-study"``, ``"worklist"`` or a
        SOP class UID. A failure status raises :class:`DimseStatusError`; leaving the
        loop early sends C-CANCEL. ``cancel_after=N`` sends C-CANCEL after N matches and
        still yields what the peer sends before its final response (FE00, or 0000 from a
        peer that ignores the cancel); the final status is in ``.status`` afterwards.
        """
        return FindResponses(self, query, model, priority, cancel_after)

    async def _cancel(self, operation: Operation) -> None:
        """C-CANCEL an operation left early, and let its remaining responses drain."""
        with contextlib.suppress(Exception):
            await operation.cancel()
            await operation.wait()

    async def move(
        self,
        query: Dataset | Mapping[str, object],
        destination: str,
        *,
        model: str = "study",
        priority: Priority = Priority.MEDIUM,
        progress: Callable[[RetrieveResult], None] | None = None,
    ) -> RetrieveResult:
        """C-MOVE (PS3.4 C.4.2): ask the peer to send the matches to ``destination``.

        ``progress`` is called with the counts of each pending response (not every SCP
        sends them: Orthanc sends only the final one). A refusal before any
        sub-operation (A801 unknown destination, A900, C000...) raises
        :class:`DimseStatusError`; a retrieve that ran returns its counts whatever its
        status (B000, A702 with the failed UIDs).
        """
        sop_class = self._model(model, "move")
        context = self._context(sop_class)
        request = CMoveRQ(
            sop_class, destination, priority, dataset=self._identifier(query, context)
        )
        operation = await self.session.send(request, context.context_id)
        return await self._retrieve(operation, progress)

    async def get(
        self,
        query: Dataset | Mapping[str, object],
        into: str | Path,
        *,
        model: str = "study",
        priority: Priority = Priority.MEDIUM,
        progress: Callable[[RetrieveResult], None] | None = None,
    ) -> RetrieveResult:
        """C-GET (PS3.4 C.4.3): the matches arrive on this association, stored under ``into``.

        Each instance is streamed to a Part 10 file (``into/Study/Series/Instance.dcm``)
        exactly as the storage SCP stores it, and answered with that SCP's status. The
        storage SOP classes that can arrive are the ones ``connect(receive=...)``
        proposed with the SCP role: :func:`storage_classes_for` finds what a query needs.
        Statuses, counts and ``progress`` as for :meth:`move`.
        """
        sop_class = self._model(model, "get")
        context = self._context(sop_class)
        root = Path(into)
        root.mkdir(parents=True, exist_ok=True)
        scp = StorageSCP(StorageConfig(root=root))
        handlers, sinks = self.session.handlers, self.session.sinks
        old_handler = handlers.get(CommandField.C_STORE_RQ)
        old_sink = sinks.get(CommandField.C_STORE_RQ)
        handlers[CommandField.C_STORE_RQ] = scp.handle
        sinks[CommandField.C_STORE_RQ] = scp.sink_for(self.session)
        try:
            request = CGetRQ(sop_class, priority, dataset=self._identifier(query, context))
            operation = await self.session.send(request, context.context_id)
            return await self._retrieve(operation, progress)
        finally:  # the association may store again afterwards as it did before
            del handlers[CommandField.C_STORE_RQ], sinks[CommandField.C_STORE_RQ]
            if old_handler is not None:
                handlers[CommandField.C_STORE_RQ] = old_handler
            if old_sink is not None:
                sinks[CommandField.C_STORE_RQ] = old_sink

    async def _retrieve(
        self, operation: Operation, progress: Callable[[RetrieveResult], None] | None
    ) -> RetrieveResult:
        counts: dict[str, int] = {}
        final: ReceivedMessage | None = None
        async for response in operation:
            primitive = response.primitive
            for name in ("remaining", "completed", "failed", "warning"):
                value = getattr(primitive, name, None)
                if value is not None:
                    counts[name] = value
            final = response
            if progress is not None and response.status.is_pending:
                progress(
                    RetrieveResult(
                        response.status,
                        completed=counts.get("completed", 0),
                        failed=counts.get("failed", 0),
                        warning=counts.get("warning", 0),
                        remaining=counts.get("remaining", 0),
                    )
                )
        assert final is not None
        failed_uids: list[str] = []
        if final.dataset is not None:
            with contextlib.suppress(Exception):
                identifier = final.decode()
                listed = identifier.get("FailedSOPInstanceUIDList", []) if identifier else []
                failed_uids = [listed] if isinstance(listed, str) else [str(u) for u in listed]
        status = final.status
        result = RetrieveResult(
            status,
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            warning=counts.get("warning", 0),
            remaining=counts.get("remaining", 0),
            failed_instances=failed_uids,
            error_comment=getattr(final.primitive, "error_comment", None),
        )
        if status.is_failure and not (counts.get("completed") or counts.get("failed")):
            _raise_for(final, "retrieve")  # refused outright (A801, A900, C000...)
        return result

    def relational(self, model: str = "study", operation: str = "find") -> bool:
        """True when the peer agreed to relational queries/retrieves (PS3.4 C.5.1.1)."""
        info = self.negotiated.extended_negotiation.get(self._model(model, operation))
        return bool(info and info[0] == 1)

    async def sop_classes(
        self, query: Dataset | Mapping[str, object], *, model: str = "study"
    ) -> set[str]:
        """The SOP Class UIDs of the instances a C-MOVE/C-GET of ``query`` would retrieve.

        Hierarchical C-FINDs (PS3.4 C.4.1.3.1) on this association walk from the query's
        level down to IMAGE, one entity at a time, asking for SOP Class UID (0008,0016).
        Raises :class:`LocalProtocolError` when an instance is answered without its SOP
        class (an SCP that does not support the key: dcmqrscp) and
        :class:`DimseStatusError` when the SCP refuses a query.
        """
        from pydicom import Dataset

        from .qr.models import MODELS, UNIQUE_KEYS

        identifier = build_dataset(query) if not isinstance(query, Dataset) else query
        name = model if not model[0].isdigit() else _model_name(model)
        levels = next(m.levels for m in MODELS if m.name == name)
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level not in levels:
            raise LocalProtocolError(f"Query/Retrieve Level {level!r} is not one of {levels}")
        found: set[str] = set()
        keys = Dataset()
        for element in identifier:
            if element.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                keys.add(element)
        pending = [(levels.index(level), keys)]
        while pending:
            depth, keys = pending.pop()
            current = levels[depth]
            unique = UNIQUE_KEYS[current]
            ask = Dataset()
            ask.update(keys)
            ask.QueryRetrieveLevel = current
            if unique not in ask:
                ask.add_new(unique, _unique_vr(unique), None)
            if current == "IMAGE":
                ask.SOPClassUID = None
            matches = [match async for match in self.find(ask, model=name)]
            for match in matches:
                if current == "IMAGE":
                    uid = str(match.get("SOPClassUID", "") or "").strip()
                    if not uid:
                        raise LocalProtocolError(
                            "the peer answered an IMAGE-level C-FIND without SOP Class UID"
                        )
                    found.add(uid)
                    continue
                value = match.get(unique)
                if value is None or not str(value.value or "").strip():
                    raise LocalProtocolError(
                        f"the peer answered a {current}-level C-FIND without its unique key"
                    )
                below = Dataset()
                for tag in (UNIQUE_KEYS[level] for level in levels[:depth]):
                    if tag in keys:
                        below.add(keys[tag])
                below.add_new(unique, value.VR, str(value.value).strip())
                pending.append((depth + 1, below))
        return found

    # -- DIMSE-N (PS3.7 §10) ---------------------------------------------------------

    def _n_context(self, sop_class_uid: str, meta_sop_class_uid: str | None) -> int:
        return self._context(meta_sop_class_uid or sop_class_uid).context_id

    def _encode(self, data: Dataset | Mapping[str, object] | None, context_id: int) -> bytes | None:
        if data is None:
            return None
        syntax = self.negotiated.contexts[context_id].transfer_syntax or IMPLICIT_VR_LITTLE_ENDIAN
        return encode_dataset(build_dataset(data), syntax)

    async def _n_request(self, request: Any, context_id: int) -> NResult:
        operation = await self.session.send(request, context_id)
        response = await operation.wait()
        primitive = response.primitive
        return NResult(
            response.status,
            response.decode() if response.dataset is not None else None,
            getattr(primitive, "affected_sop_instance_uid", None),
            getattr(primitive, "error_comment", None),
        )

    async def n_get(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        attributes: Sequence[int] | None = None,
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-GET: the instance's attributes (all of them when ``attributes`` is None).

        ``meta_sop_class_uid`` names the context to send on when the SOP class belongs to
        a Meta SOP Class (print: the Printer SOP Class under Basic Grayscale Print).
        """
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        request = NGetRQ(
            sop_class_uid, sop_instance_uid, list(attributes) if attributes is not None else None
        )
        return await self._n_request(request, context_id)

    async def n_set(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        modification: Dataset | Mapping[str, object],
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-SET: change attributes of an instance (MPPS, print image boxes)."""
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        request = NSetRQ(
            sop_class_uid, sop_instance_uid, dataset=self._encode(modification, context_id)
        )
        return await self._n_request(request, context_id)

    async def n_action(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        action_type_id: int,
        information: Dataset | Mapping[str, object] | None = None,
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-ACTION: ask for an action (storage commitment request, print a film box)."""
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        request = NActionRQ(
            sop_class_uid,
            sop_instance_uid,
            action_type_id,
            dataset=self._encode(information, context_id),
        )
        return await self._n_request(request, context_id)

    async def n_create(
        self,
        sop_class_uid: str,
        attributes: Dataset | Mapping[str, object] | None = None,
        sop_instance_uid: str | None = None,
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-CREATE: create an instance (MPPS step, film session); the SCP may assign its UID."""
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        request = NCreateRQ(
            sop_class_uid, sop_instance_uid, dataset=self._encode(attributes, context_id)
        )
        return await self._n_request(request, context_id)

    async def n_delete(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-DELETE: delete an instance (a film session)."""
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        return await self._n_request(NDeleteRQ(sop_class_uid, sop_instance_uid), context_id)

    async def n_event_report(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        event_type_id: int,
        information: Dataset | Mapping[str, object] | None = None,
        *,
        meta_sop_class_uid: str | None = None,
    ) -> NResult:
        """N-EVENT-REPORT: report an event (a storage commitment result, printer status)."""
        context_id = self._n_context(sop_class_uid, meta_sop_class_uid)
        request = NEventReportRQ(
            sop_class_uid,
            sop_instance_uid,
            event_type_id,
            dataset=self._encode(information, context_id),
        )
        return await self._n_request(request, context_id)

    # -- ending ------------------------------------------------------------------

    async def release(self) -> None:
        """Cancel unfinished queries, wait for outstanding operations, release (A-RELEASE)."""
        for operation in list(self._queries):
            await self._cancel(operation)
        await self.session.release()

    def abort(self) -> None:
        """A-ABORT the association at once."""
        self.session.abort()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None and self.session.association.is_established:
            await self.release()
            return
        await self.session.__aexit__(exc_type, exc, traceback)


def _raise_for(response: ReceivedMessage, what: str) -> None:
    """Raise DimseStatusError for a failure status (with the peer's Error Comment)."""
    status = response.status
    if status.is_failure:
        comment = getattr(response.primitive, "error_comment", None) or ""
        log.info("%s failed: %s %s", what, status, comment)
        raise DimseStatusError(status, comment)
    if status.category.value == "warning":
        log.info("%s ended with warning %s", what, status)


def _model_name(sop_class_uid: str) -> str:
    for (name, _operation), uid in QUERY_MODELS.items():
        if uid == sop_class_uid:
            return name
    raise LocalProtocolError(f"{sop_class_uid} is not a Query/Retrieve SOP class")


def _unique_vr(tag: int) -> str:
    return "LO" if tag == 0x00100020 else "UI"  # Patient ID, else a UID


class FindResponses:
    """The matches of one C-FIND, as an async iterator (what :meth:`Client.find` returns).

    After the loop ends, ``status`` is the final status and ``count`` the number of
    matches; ``cancelled`` is True when a C-CANCEL was sent (``cancel_after`` or leaving
    the loop early). ``aclose()`` cancels an unfinished query.
    """

    def __init__(
        self,
        client: Client,
        query: Dataset | Mapping[str, object],
        model: str,
        priority: Priority,
        cancel_after: int | None,
    ) -> None:
        self.client = client
        self.status: Status | None = None
        self.error_comment: str | None = None
        self.count = 0
        self.cancelled = False
        self._responses = self._run(query, model, priority, cancel_after)

    def __aiter__(self) -> FindResponses:
        return self

    async def __anext__(self) -> Dataset:
        return await self._responses.__anext__()

    async def aclose(self) -> None:
        await self._responses.aclose()

    async def _run(
        self,
        query: Dataset | Mapping[str, object],
        model: str,
        priority: Priority,
        cancel_after: int | None,
    ) -> AsyncGenerator[Dataset, None]:
        client = self.client
        sop_class = client._model(model, "find")
        context = client._context(sop_class)
        request = CFindRQ(sop_class, priority, dataset=client._identifier(query, context))
        operation = await client.session.send(request, context.context_id)
        client._queries.add(operation)
        try:
            async for response in operation:
                status = response.status
                if status.is_pending:
                    match = response.decode()
                    if match is not None:
                        self.count += 1
                        yield match
                    if (
                        cancel_after is not None
                        and self.count >= cancel_after
                        and not self.cancelled
                        and operation.final is None
                    ):
                        self.cancelled = True
                        log.info("C-CANCEL after %d matches", self.count)
                        await operation.cancel()
                    continue
                self.status = status
                self.error_comment = getattr(response.primitive, "error_comment", None)
                _raise_for(response, "C-FIND")
        finally:
            client._queries.discard(operation)
            if operation.final is None:
                self.cancelled = True
                await client._cancel(operation)
                if operation.final is not None:
                    self.status = operation.final.status


async def storage_classes_for(
    host: str,
    port: int,
    query: Dataset | Mapping[str, object],
    *,
    model: str = "study",
    called_ae: str = "ANY-SCP",
    calling_ae: str = "DICOMWIRE",
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
) -> set[str] | None:
    """The storage SOP classes a C-GET of ``query`` needs, asked of the peer by C-FIND.

    The answer for ``connect(..., receive=...)``: only those contexts are then proposed,
    where the common list would propose two dozen and still miss a rarer class. None when
    the peer cannot tell (no C-FIND for the model, SOP Class UID not answered at the
    IMAGE level, a refused query): then propose the common classes or name them.
    """
    from ..errors import DicomWireError

    try:
        async with connect(
            host,
            port,
            called_ae=called_ae,
            calling_ae=calling_ae,
            services=[QUERY_MODELS[(model, "find")] if not model[0].isdigit() else model],
            timeouts=timeouts,
            tls=tls,
        ) as client:
            found = await client.sop_classes(query, model=model)
    except (DicomWireError, KeyError) as exc:
        log.info("cannot learn the SOP classes of the query from the peer: %s", exc)
        return None
    return found

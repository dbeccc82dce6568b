"""The MPPS SCP as a node service: Modality Performed Procedure Step SOP Class (PS3.4 F.7).

N-CREATE (F.7.2.1) creates a step: its SOP Instance UID is the request's or, when the
request has none, one the SCP assigns and returns in the response; the attribute list
must hold the Type 1 attributes of Table F.7.2-1 (and, with ``check_type2``, the Type 2
ones) and a Performed Procedure Step Status of IN PROGRESS (F.7.2.1.3: else 0106). N-SET
(F.7.2.2) changes a step only while it is IN PROGRESS (F.7.2.2.3: else 0110 with the
Error Comment "Performed Procedure Step Object may no longer be updated" and Error ID
A710, Table F.7.2-2); it may not carry the attributes the table marks "Not allowed"
(0105), and the move to COMPLETED or DISCONTINUED needs the final-state attributes
(0120/0121). Statuses are those of PS3.7 Annex C for N-CREATE and N-SET:

====== =========================================================================
0000   success
0105   no such attribute: an N-SET carries an attribute it may not set
0106   invalid attribute value: a status other than IN PROGRESS in an N-CREATE,
       or not one of IN PROGRESS / COMPLETED / DISCONTINUED in an N-SET
0110   processing failure: the step is COMPLETED or DISCONTINUED already
0111   duplicate SOP instance: an N-CREATE of a UID that exists
0112   no such SOP instance: an N-SET of a UID never created
0117   invalid SOP instance: an N-CREATE with a malformed SOP Instance UID
0120   missing attribute (Type 1, or Type 2 when checked, or final state)
0121   missing attribute value (Type 1 present but empty)
====== =========================================================================

Failures carry the Attribute Identifier List (0000,1005) of the attributes at fault and
an Error Comment naming them. Steps are kept in the node's database
(:class:`~.store.StepStore`); each accepted message is relayed (:class:`~.relay.MPPSRelay`)
to the AEs of ``relay_to``, and each change of status calls the ``on_status`` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ...dimse.commands import CommandField, Tag
from ...dimse.primitives import DimseResponse, NCreateRQ, NSetRQ
from ...dimse.status import (
    DUPLICATE_SOP_INSTANCE,
    INVALID_ATTRIBUTE_VALUE,
    MISSING_ATTRIBUTE,
    NO_SUCH_ATTRIBUTE,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    SUCCESS,
    Status,
)
from ...errors import ConfigError, DataSetError, DimseStatusError
from ...ul.identifiers import is_valid_uid
from ...ul.negotiation import DEFAULT_TRANSFER_SYNTAXES
from ...ul.timeouts import Timeouts
from ..jobs import JobQueue, RetryPolicy
from ..service import Binding, Service, StatusDeclaration, StatusTable
from .attributes import (
    FINAL_STATES,
    IN_PROGRESS,
    STATUS_TAG,
    Problem,
    attribute_list,
    check_create,
    check_final,
    check_set,
)
from .relay import N_CREATE, N_SET, MPPSRelay
from .store import Step, StepStore, to_json

if TYPE_CHECKING:
    from pydicom import Dataset

    from ...dimse.session import Request
    from ...ul.tls import TLSConfig
    from ..directory import AEDirectory, RemoteAE
    from ..node import Node

__all__ = [
    "MISSING_ATTRIBUTE_VALUE",
    "AdmitHook",
    "MPPS",
    "MPPS_SOP_CLASS",
    "MPPSConfig",
    "NOT_UPDATABLE_COMMENT",
    "NOT_UPDATABLE_ERROR_ID",
    "StatusHook",
]

log = logging.getLogger("dicomwire.services.mpps")
_T = TypeVar("_T")

#: PS3.4 F.7: Modality Performed Procedure Step SOP Class.
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
#: PS3.7 Annex C: a Type 1 attribute present without a value.
MISSING_ATTRIBUTE_VALUE = Status(0x0121)
#: PS3.7 Annex C: a malformed SOP Instance UID.
INVALID_SOP_INSTANCE = Status(0x0117)
#: PS3.4 Table F.7.2-2: the N-SET of a step that is no longer IN PROGRESS.
NOT_UPDATABLE_COMMENT = "Performed Procedure Step Object may no longer be updated"
NOT_UPDATABLE_ERROR_ID = 0xA710

#: Called with the step each time its status changes (created IN PROGRESS, then
#: COMPLETED or DISCONTINUED); may be a coroutine function. Its errors are logged.
StatusHook = Callable[[Step], Awaitable[None] | None]
#: Called with an N-CREATE's attribute list and the caller's AE title once it passed the
#: checks of Table F.7.2-1, before it is accepted; raising DimseStatusError refuses it
#: with that status (e.g. 0112 when the scheduled study or accession is unknown).
AdmitHook = Callable[["Dataset", str], Awaitable[None] | None]


@dataclass(slots=True)
class MPPSConfig:
    """The ``[mpps]`` table."""

    #: AE titles of the node's directory (``[[nodes]]``) every accepted message goes to.
    relay_to: list[str] = field(default_factory=list)
    #: Also require the Type 2 attributes of Table F.7.2-1 in an N-CREATE (present, maybe
    #: empty). Off by default: many modalities leave some out, and the RIS accepts them.
    check_type2: bool = False
    #: ``"package.module:function"`` called with each step whose status changes.
    on_status: str | None = None
    #: ``"package.module:function"`` that may refuse an N-CREATE (see :data:`AdmitHook`).
    admit: str | None = None
    #: Relay retries: first wait, growth factor, longest wait (seconds), attempts in all.
    relay_first_delay: float = 5.0
    relay_backoff: float = 2.0
    relay_max_delay: float = 300.0
    relay_attempts: int = 10
    #: Seconds to wait for a destination (connect, association, each response).
    relay_timeout: float = 30.0
    #: Messages relayed at once (the messages of one step always go one at a time).
    relay_concurrency: int = 4

    def validate(self) -> None:
        """A ConfigError naming the first bad setting."""
        if not all(isinstance(title, str) and title.strip() for title in self.relay_to):
            raise ConfigError(f"mpps.relay_to must list AE titles: {self.relay_to!r}")
        for name in ("relay_first_delay", "relay_max_delay", "relay_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"mpps.{name} must be a positive number of seconds")
        if self.relay_backoff < 1:
            raise ConfigError("mpps.relay_backoff must be 1 or more")
        for name in ("relay_attempts", "relay_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"mpps.{name} must be 1 or more")
        for name in ("on_status", "admit"):
            spec = getattr(self, name)
            if spec is not None and ":" not in spec:
                raise ConfigError(f"mpps.{name} must be 'package.module:function', not {spec!r}")

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            first_delay=self.relay_first_delay,
            factor=self.relay_backoff,
            max_delay=self.relay_max_delay,
            max_attempts=self.relay_attempts,
        )


def load_hook(spec: str, name: str = "on_status") -> Any:
    """The callable ``"package.module:function"`` names (ConfigError when it cannot)."""
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"mpps.{name}: cannot load {spec!r}: {exc}", key=name) from None
    if not callable(target):
        raise ConfigError(f"mpps.{name}: {spec!r} is not callable", key=name)
    return target


class MPPS(Service):
    """The MPPS SCP: steps in the node's database, relayed, a hook on each status change.

    In a node its database is the node's (``database_path(config)``), its relay
    destinations come from the node's AE directory and it calls them with the node's
    first AE title. Standalone (tests, embedding), :meth:`open` does the same with what
    it is given.
    """

    name = "mpps"
    section = "mpps"
    config_type = MPPSConfig
    statuses: ClassVar[StatusTable] = {
        "N-CREATE": (
            StatusDeclaration(SUCCESS, "the step is created IN PROGRESS"),
            StatusDeclaration(DUPLICATE_SOP_INSTANCE, "a step with this SOP Instance UID exists"),
            StatusDeclaration(INVALID_SOP_INSTANCE, "the SOP Instance UID is malformed"),
            StatusDeclaration(NO_SUCH_ATTRIBUTE, "an attribute not allowed (PS3.4 F.7.2)"),
            StatusDeclaration(MISSING_ATTRIBUTE, "a required attribute is missing"),
            StatusDeclaration(MISSING_ATTRIBUTE_VALUE, "a required attribute is empty"),
            StatusDeclaration(INVALID_ATTRIBUTE_VALUE, "an attribute value is invalid"),
            StatusDeclaration(PROCESSING_FAILURE, "the database cannot store the step"),
        ),
        "N-SET": (
            StatusDeclaration(SUCCESS, "the step is updated (COMPLETED/DISCONTINUED: final)"),
            StatusDeclaration(NO_SUCH_SOP_INSTANCE, "no step with this SOP Instance UID"),
            StatusDeclaration(NO_SUCH_ATTRIBUTE, "an attribute not allowed (PS3.4 F.7.2)"),
            StatusDeclaration(MISSING_ATTRIBUTE, "a required attribute is missing"),
            StatusDeclaration(MISSING_ATTRIBUTE_VALUE, "a required attribute is empty"),
            StatusDeclaration(INVALID_ATTRIBUTE_VALUE, "an attribute value is invalid"),
            StatusDeclaration(PROCESSING_FAILURE, "the database cannot store the step"),
        ),
    }

    def __init__(
        self,
        config: MPPSConfig | None = None,
        *,
        database: str | Path | None = None,
        on_status: StatusHook | None = None,
        admit: AdmitHook | None = None,
    ) -> None:
        self.config = config or MPPSConfig()
        self.config.validate()
        self.database: str | Path | None = database
        self.hooks: list[StatusHook] = [on_status] if on_status is not None else []
        if self.config.on_status:
            self.hooks.append(load_hook(self.config.on_status))
        self.admit: AdmitHook | None = admit
        if self.config.admit:
            self.admit = load_hook(self.config.admit, "admit")
        self.store: StepStore | None = None
        self.queue: JobQueue | None = None
        self.relay: MPPSRelay | None = None
        self._lock = asyncio.Lock()  # made again by open(): one per event loop
        self._hook_tasks: set[asyncio.Task[None]] = set()
        # Database work on a thread of its own: a busy default executor (other services,
        # blocking user code) must not hold up the answers to modalities.
        self._executor: ThreadPoolExecutor | None = None

    # -- life ------------------------------------------------------------------------

    async def start(self, node: Node) -> None:
        """Open the steps and the relay queue in the node's database; start relaying."""
        from ..database import database_location

        self.open(
            self.database or database_location(node.config),
            directory=node.directory,
            calling_ae=node.config.ae_titles[0],
            tls=node.config.tls,
        )

    def open(
        self,
        database: str | Path,
        *,
        directory: AEDirectory | None = None,
        calling_ae: str = "DICOMWIRE",
        tls: TLSConfig | None = None,
    ) -> None:
        """Open the database; with ``relay_to``, start the relay (needs a running loop)."""
        config = self.config
        destinations = [title.strip() for title in config.relay_to]
        if destinations:
            if directory is None:
                raise ConfigError("mpps.relay_to needs the node's AE directory ([[nodes]])")
            for title in destinations:  # fail at start, not at the first relay
                try:
                    directory.resolve(title)
                except Exception as exc:
                    raise ConfigError(f"mpps.relay_to: {exc}", key="relay_to") from None
        from ..database import job_queue_at, step_store_at

        self.store = step_store_at(database)  # PostgreSQL: shared by every node of a cluster
        self.queue = job_queue_at(database)
        self._lock = asyncio.Lock()
        if destinations:
            assert directory is not None
            node_tls = tls

            def tls_for(entry: RemoteAE) -> TLSConfig | None:
                return node_tls if entry.tls else None

            timeout = config.relay_timeout
            self.relay = MPPSRelay(
                self.queue,
                destinations,
                resolve=directory.resolve,
                calling_ae=calling_ae,
                timeouts=Timeouts(
                    artim=timeout, acse=timeout, dimse=timeout, network_idle=None, connect=timeout
                ),
                policy=config.retry_policy,
                tls_for=tls_for,
                concurrency=config.relay_concurrency,
                poll=min(1.0, config.relay_first_delay),
            )
            self.relay.start()
        log.info(
            "MPPS SCP: steps in %s; relaying to %s",
            database,
            ", ".join(destinations) if destinations else "no one",
        )

    async def _db(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a database call on the service's own thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="dicomwire-mpps")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def stop(self) -> None:
        """Stop relaying (what is left is sent after the next start) and close."""
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)
        for closing in (self.store, self.queue):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        self.store = self.queue = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def bindings(self) -> Sequence[Binding]:
        return [
            Binding(
                MPPS_SOP_CLASS,
                DEFAULT_TRANSFER_SYNTAXES,
                {
                    CommandField.N_CREATE_RQ: self.handle_create,
                    CommandField.N_SET_RQ: self.handle_set,
                },
            )
        ]

    # -- the API -----------------------------------------------------------------------

    def step(self, uid: str) -> Step | None:
        """The stored step ``uid``, or None."""
        return self._store().get(uid)

    def steps(self, status: str | None = None) -> list[Step]:
        """Every stored step (with ``status``), oldest first."""
        return self._store().steps(status)

    def _store(self) -> StepStore:
        if self.store is None:
            raise ConfigError("the MPPS service is not started (no database open)")
        return self.store

    # -- N-CREATE (PS3.4 F.7.2.1) --------------------------------------------------------

    async def handle_create(self, request: Request) -> DimseResponse:
        primitive = request.primitive
        assert isinstance(primitive, NCreateRQ)
        caller = request.negotiated.remote_ae_title
        given = primitive.affected_sop_instance_uid
        uid = given.strip("\0 ") if given else f"2.25.{uuid.uuid4().int}"
        if not is_valid_uid(uid):
            log.warning("N-CREATE from %s refused: malformed SOP Instance UID %r", caller, uid)
            return primitive.response(
                INVALID_SOP_INSTANCE, error_comment="malformed SOP Instance UID"
            )
        if self.store is None:
            return primitive.response(PROCESSING_FAILURE, error_comment="MPPS SCP not started")
        try:
            dataset = _decoded(request)
        except DataSetError as exc:
            return _undecodable(primitive, f"N-CREATE {uid} from {caller}", "attribute list", exc)
        problems = check_create(dataset, check_type2=self.config.check_type2)
        if problems:
            return self._refuse(primitive, "N-CREATE", uid, caller, problems)
        assert dataset is not None
        if self.admit is not None:
            try:
                verdict = self.admit(dataset, caller)
                if inspect.isawaitable(verdict):
                    await verdict
            except DimseStatusError as exc:
                log.warning("N-CREATE %s from %s refused by admit (%s)", uid, caller, exc)
                return primitive.response(
                    exc.status, affected_sop_instance_uid=uid, error_comment=exc.comment[:64]
                )
        stored = _storable(dataset)
        if stored is None:
            log.warning("N-CREATE %s from %s: the attribute list cannot be stored", uid, caller)
            return primitive.response(PROCESSING_FAILURE, error_comment="unstorable attributes")
        raw = _raw(request)
        syntax = request.context.transfer_syntax or ""
        duplicate = primitive.response(
            DUPLICATE_SOP_INSTANCE,
            affected_sop_instance_uid=uid,
            error_comment="SOP Instance exists already",
        )
        async with self._lock:
            store = self._store()
            if await self._db(store.exists, uid):
                log.warning("N-CREATE %s from %s refused: the instance exists (0111)", uid, caller)
                return duplicate
            # The relay is queued first: a crash in between re-relays (answered 0111 by
            # the destination, counted delivered) rather than losing the message.
            await self._db(self._accept, N_CREATE, uid, raw, syntax, caller)
            if not await self._db(store.insert, uid, IN_PROGRESS, stored, caller):
                # another process of the node created it meanwhile (workers > 1)
                log.warning("N-CREATE %s from %s refused: created meanwhile (0111)", uid, caller)
                return duplicate
        if self.relay is not None:
            self.relay.wake()
        log.info("N-CREATE %s from %s: IN PROGRESS", uid, caller)
        now = time.time()
        self._changed(Step(uid, IN_PROGRESS, dataset, caller, now, now))
        return primitive.response(SUCCESS, affected_sop_instance_uid=uid)

    # -- N-SET (PS3.4 F.7.2.2) --------------------------------------------------------------

    async def handle_set(self, request: Request) -> DimseResponse:
        primitive = request.primitive
        assert isinstance(primitive, NSetRQ)
        caller = request.negotiated.remote_ae_title
        uid = primitive.requested_sop_instance_uid.strip("\0 ")
        if self.store is None:
            return primitive.response(PROCESSING_FAILURE, error_comment="MPPS SCP not started")
        try:
            modification = _decoded(request)
        except DataSetError as exc:
            return _undecodable(primitive, f"N-SET {uid} from {caller}", "modification list", exc)
        async with self._lock:
            store = self._store()
            step = await self._db(store.get, uid)
            if step is None:
                log.warning("N-SET %s from %s refused: no such instance (0112)", uid, caller)
                return primitive.response(
                    NO_SUCH_SOP_INSTANCE, error_comment="no such MPPS instance"
                )
            if step.finished:
                log.warning(
                    "N-SET %s from %s refused: the step is %s already (0110)",
                    uid,
                    caller,
                    step.status,
                )
                return primitive.response(
                    PROCESSING_FAILURE,
                    error_comment=NOT_UPDATABLE_COMMENT,
                    error_id=NOT_UPDATABLE_ERROR_ID,
                )
            problems = check_set(modification, check_type2=self.config.check_type2)
            merged = _merged(step.dataset, modification)
            status = str(merged[STATUS_TAG].value or "").strip() if STATUS_TAG in merged else ""
            if not problems and status in FINAL_STATES:
                problems = check_final(merged, status)
            if problems:
                return self._refuse(primitive, "N-SET", uid, caller, problems)
            stored = _storable(merged)
            if stored is None:
                log.warning("N-SET %s from %s: the attributes cannot be stored", uid, caller)
                return primitive.response(PROCESSING_FAILURE, error_comment="unstorable attributes")
            raw = _raw(request)
            syntax = request.context.transfer_syntax or ""
            await self._db(self._accept, N_SET, uid, raw, syntax, caller)
            await self._db(store.update, uid, status or step.status, stored)
        if self.relay is not None:
            self.relay.wake()
        log.info("N-SET %s from %s: %s", uid, caller, status or step.status)
        if status and status != step.status:
            self._changed(Step(uid, status, merged, step.calling_ae, step.created, time.time()))
        return primitive.response(SUCCESS, affected_sop_instance_uid=uid)

    # -- shared ---------------------------------------------------------------------------

    def _accept(
        self, operation: str, uid: str, raw: bytes | None, syntax: str, caller: str
    ) -> None:
        """Queue the relay of an accepted message (before it is stored: never lost)."""
        if self.relay is not None:
            self.relay.enqueue(operation, uid, raw, syntax, caller)

    def _refuse(
        self,
        primitive: NCreateRQ | NSetRQ,
        operation: str,
        uid: str,
        caller: str,
        problems: list[Problem],
    ) -> DimseResponse:
        """The failure response for ``problems`` (PS3.7 Annex C), logged."""
        ranked = (
            ("not-allowed", NO_SUCH_ATTRIBUTE),
            ("missing", MISSING_ATTRIBUTE),
            ("empty", MISSING_ATTRIBUTE_VALUE),
            ("invalid", INVALID_ATTRIBUTE_VALUE),
        )
        kind, status = next((k, s) for k, s in ranked if any(p.kind == k for p in problems))
        chosen = [p for p in problems if p.kind == kind]
        comment = f"{kind}: " + ", ".join(p.path for p in chosen)
        log.warning(
            "%s %s from %s refused (%s): %s",
            operation,
            uid,
            caller,
            status,
            "; ".join(map(str, problems)),
        )
        return primitive.response(
            status,
            affected_sop_instance_uid=uid,
            error_comment=comment[:64],
            extra={int(Tag.AttributeIdentifierList): attribute_list(chosen)},
        )

    def _changed(self, step: Step) -> None:
        """Call the hooks with the step as it now is (in the background, errors logged)."""
        if not self.hooks:
            return
        task = asyncio.get_running_loop().create_task(self._call_hooks(step))
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    async def _call_hooks(self, step: Step) -> None:
        uid = step.uid
        for hook in self.hooks:
            try:
                result = hook(step)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("MPPS on_status hook %r failed for %s", hook, uid)


def _merged(stored: Dataset, modification: Dataset | None) -> Dataset:
    """The step after an N-SET: each attribute of the modification list replaces its own."""
    merged = copy.deepcopy(stored)
    if modification is not None:
        for element in modification:
            merged[element.tag] = copy.deepcopy(element)
    return merged


def _raw(request: Request) -> bytes | None:
    """The request's data set as received (what the relay passes on unchanged)."""
    data = request.message.dataset
    return bytes(data) if isinstance(data, bytes | bytearray | memoryview) else None


def _storable(dataset: Dataset) -> str | None:
    """The attributes as the store keeps them, or None when they cannot be encoded."""
    try:
        return to_json(dataset)
    except Exception:
        log.exception("cannot encode MPPS attributes as DICOM JSON")
        return None


def _decoded(request: Request) -> Dataset | None:
    """The request's data set (None when it has none); DataSetError when undecodable."""
    return request.decode() if request.message.dataset is not None else None


def _undecodable(
    primitive: NCreateRQ | NSetRQ, request: str, what: str, exc: DataSetError
) -> DimseResponse:
    """Processing Failure for a data set that cannot be decoded, and the log line why."""
    log.warning("%s: cannot decode the %s: %s", request, what, exc)
    return primitive.response(PROCESSING_FAILURE, error_comment="undecodable attributes")

"""The Modality Worklist SCP: PS3.4 Annex K, Modality Worklist Information Model - FIND.

C-FIND-RQ on 1.2.840.10008.5.1.4.31 is answered from a
:class:`~.store.WorklistStore` (entries added by the API or CLI, and a watched directory
of ``.wl``/``.dcm`` files). The identifier is compiled by
:mod:`dicomwire.services.matching` (PS3.4 C.2.2.2, one matcher for Q/R and worklist) and
answered as PS3.4 K.4.1.1.4 and the RIS statement we serve describe:

- one pending response per matching entry: FF00, or **FF01** when the identifier holds a
  matching key that is not a *supported matching key* (:data:`SUPPORTED_KEYS`,
  :data:`SUPPORTED_STEP_KEYS`): such a key is not used for matching (PS3.4 K.4.1.1.4,
  "one or more Optional Keys were not supported"), only answered as a return key;
- 0000 when the matches are done (or there are none); FE00 when the SCU sent C-CANCEL;
- A900 (Identifier does not match SOP Class) with an Error Comment when the identifier is
  malformed (cannot be decoded, a sequence key with more than one item, an invalid date);
- A700 (Out of resources) after ``max_responses`` matches; C001 (Unable to process) and
  a log line when the store fails.

Each response holds every key the identifier asked for, zero length when the entry has no
value; a sequence key's item is answered for each of the entry's items it matches (PS3.4
C.2.2.2.6); a sequence asked for empty is answered whole. Specific Character Set both
ways: the identifier is decoded in its own character set; an answer is encoded in the
character set of the query when every value fits in it, else in the entry's own (UTF-8,
ISO_IR 192, for an entry without one whose text is not ASCII).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...dimse.commands import CommandField
from ...dimse.primitives import DimseResponse
from ...dimse.session import Request
from ...dimse.status import CANCEL, OUT_OF_RESOURCES, SUCCESS
from ...errors import ConfigError, DataSetError, DicomWireError, InvalidQueryError
from ..matching import NOT_KEYS, KeyCondition, MatchKind, Query, compile_query
from ..service import Binding, Service, StatusDeclaration, StatusTable
from .store import STEP_SEQUENCE, WatchedDirectory, WorklistStore

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..node import Node, NodeConfig

__all__ = [
    "LIST_KEYS",
    "MODALITY_WORKLIST_FIND",
    "SUPPORTED_KEYS",
    "SUPPORTED_STEP_KEYS",
    "Worklist",
    "WorklistConfig",
    "answer_for",
    "supported_query",
]

log = logging.getLogger("dicomwire.services.worklist")

#: Modality Worklist Information Model - FIND (PS3.4 K.6.1.2).
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
#: Supported matching keys outside the Scheduled Procedure Step Sequence: the RIS
#: statement's Table 3.2 (Accession Number, Patient's Name, Patient ID, Requested
#: Procedure ID) and the required matching keys of PS3.4 Table K.6-1 at this level.
SUPPORTED_KEYS = frozenset((0x00080050, 0x00100010, 0x00100020, 0x00401001, STEP_SEQUENCE))
#: Supported matching keys inside the Scheduled Procedure Step Sequence: Table 3.2's
#: Modality, Scheduled Station AE Title, Start Date, Start Time, Scheduled Station Name,
#: and PS3.4 Table K.6-1's other required one, Scheduled Performing Physician's Name.
SUPPORTED_STEP_KEYS = frozenset(
    (0x00080060, 0x00400001, 0x00400002, 0x00400003, 0x00400010, 0x00400006)
)
#: Keys that may hold several values (any of them matches): Scheduled Station AE Title.
LIST_KEYS = frozenset((0x00400001,))
#: Pending statuses (PS3.4 K.4.1.1.4).
MATCH = 0xFF00
MATCH_UNSUPPORTED_KEYS = 0xFF01
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC001
_CHARSET = 0x00080005
_COMMENT_LENGTH = 64  # Error Comment is LO


#: What pydicom raises on a stored value it cannot decode (its BytesLengthException is
#: a plain Exception subclass).
def _answer_errors() -> tuple[type[Exception], ...]:
    from pydicom.errors import BytesLengthException

    return (DataSetError, ValueError, TypeError, KeyError, LookupError, BytesLengthException)


@dataclass(slots=True)
class WorklistConfig:
    """The ``[worklist]`` table of a node's configuration."""

    #: A folder of ``.wl``/``.dcm`` worklist files to serve beside the stored entries:
    #: files in it for every called AE title, files in ``<AE>/`` for that one (wlmscpfs).
    directory: Path | None = None
    #: Seconds between rescans of the directory (0: before every query).
    poll_interval: float = 2.0
    #: Most matches answered per query (0: no limit); beyond it the query ends with A700.
    max_responses: int = 0
    #: Answer an SCU only the steps scheduled for it: Scheduled Station AE Title equal to
    #: its calling AE title (the RIS statement's optional restriction).
    restrict_to_calling_ae: bool = False


class Worklist(Service):
    """Modality Worklist SCP (C-FIND) over a :class:`~.store.WorklistStore`."""

    name = "worklist"
    section = "worklist"
    config_type = WorklistConfig
    statuses: ClassVar[StatusTable] = {
        "C-FIND": (
            StatusDeclaration(MATCH, "one response per matching scheduled step"),
            StatusDeclaration(MATCH_UNSUPPORTED_KEYS, "a match; a matching key was not supported"),
            StatusDeclaration(SUCCESS, "matching is complete"),
            StatusDeclaration(CANCEL, "C-CANCEL received: matching stopped"),
            StatusDeclaration(OUT_OF_RESOURCES, "more matches than [worklist] allows"),
            StatusDeclaration(IDENTIFIER_MISMATCH, "the identifier is not a worklist query"),
            StatusDeclaration(UNABLE_TO_PROCESS, "the worklist store or an entry is unreadable"),
        )
    }

    def __init__(self, store: WorklistStore, config: WorklistConfig | None = None) -> None:
        self.store = store
        self.config = config or WorklistConfig()
        _check_config(self.config)
        self.directory: WatchedDirectory | None = None
        self._scan: asyncio.Future[tuple[int, int]] | None = None
        if self.config.directory is not None:
            self.directory = WatchedDirectory(
                store, self.config.directory, self.config.poll_interval
            )

    @classmethod
    def for_node(cls, config: NodeConfig) -> Worklist:
        """The service a node runs: its ``[worklist]`` table, the node's database."""
        from ..database import open_worklist_store

        section = config.sections.get("worklist")
        return cls(open_worklist_store(config), section)

    def bindings(self) -> Sequence[Binding]:
        return [Binding(MODALITY_WORKLIST_FIND, handlers={CommandField.C_FIND_RQ: self.handle})]

    async def start(self, node: Node) -> None:
        """Read the watched directory in the background (a query waits for the scan)."""
        if self.directory is not None:
            self._scan = asyncio.ensure_future(
                asyncio.to_thread(self.directory.refresh, force=True)
            )

    async def stop(self) -> None:
        if self._scan is not None:
            with contextlib.suppress(Exception):
                await self._scan
            self._scan = None

    async def handle(self, request: Request) -> DimseResponse | int:
        """Answer one C-FIND-RQ: pending responses, then the final status."""
        primitive = request.primitive
        try:
            identifier = request.decode()
            if identifier is None:
                raise InvalidQueryError("the C-FIND-RQ has no identifier")
            query = compile_query(identifier, list_keys=LIST_KEYS)
        except (InvalidQueryError, DicomWireError, ValueError, TypeError, KeyError) as exc:
            comment = f"{exc}"[:_COMMENT_LENGTH]
            log.warning("worklist query refused (A900): %s", exc)
            return primitive.response(IDENTIFIER_MISMATCH, error_comment=comment)
        matching, unsupported = supported_query(query)
        queries = [matching]
        calling_ae = request.negotiated.remote_ae_title
        if self.config.restrict_to_calling_ae:
            queries.append(_scheduled_for(calling_ae))
        called_ae = request.negotiated.local_ae_title
        try:
            if self.directory is not None:
                await asyncio.to_thread(self.directory.refresh)
            entries = await asyncio.to_thread(self.store.find, queries, called_ae=called_ae)
        except (sqlite3.Error, OSError, DicomWireError) as exc:
            log.error("worklist store failed answering %s: %s", calling_ae, exc)
            return primitive.response(
                UNABLE_TO_PROCESS, error_comment=f"worklist store failed: {exc}"[:_COMMENT_LENGTH]
            )
        status = MATCH_UNSUPPORTED_KEYS if unsupported else MATCH
        limit = self.config.max_responses
        query_charset = identifier.get(_CHARSET)
        sent = 0
        answer_errors = _answer_errors()
        for entry in entries:
            if request.cancelled.is_set():
                return primitive.response(CANCEL)
            if limit and sent >= limit:
                log.warning("worklist query from %s: more than %d matches", calling_ae, limit)
                return primitive.response(
                    OUT_OF_RESOURCES,
                    error_comment=f"more than {limit} matches: narrow the query",
                )
            try:
                answer = answer_for(entry, identifier, matching, query_charset)
                await request.send_pending(answer, status)
            except answer_errors as exc:  # a stored value pydicom refuses
                log.error(
                    "worklist entry %s cannot be answered: %s", entry.get("StudyInstanceUID"), exc
                )
                return primitive.response(
                    UNABLE_TO_PROCESS, error_comment=f"entry unreadable: {exc}"[:_COMMENT_LENGTH]
                )
            sent += 1
            await asyncio.sleep(0)  # let a C-CANCEL that arrived be read before the next
        if request.cancelled.is_set():
            return primitive.response(CANCEL)
        log.info("worklist query from %s: %d matches", calling_ae, sent)
        return primitive.response(SUCCESS)


def _check_config(config: WorklistConfig) -> None:
    """Values in range, or a :class:`ConfigError` naming the key."""
    poll, limit = config.poll_interval, config.max_responses
    if isinstance(poll, bool) or not isinstance(poll, int | float) or poll < 0:
        raise ConfigError(
            f"worklist.poll_interval must be 0 or more seconds, not {poll!r}",
            key="worklist.poll_interval",
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(
            f"worklist.max_responses must be 0 (no limit) or more, not {limit!r}",
            key="worklist.max_responses",
        )


def _scheduled_for(ae_title: str) -> Query:
    """The condition "a step is scheduled for ``ae_title``"."""
    from pydicom import Dataset

    step = Dataset()
    step.ScheduledStationAETitle = ae_title
    restriction = Dataset()
    restriction.ScheduledProcedureStepSequence = [step]
    return compile_query(restriction)


def _universal(condition: KeyCondition) -> KeyCondition:
    return dataclasses.replace(condition, kind=MatchKind.UNIVERSAL)


def supported_query(query: Query) -> tuple[Query, bool]:
    """``query`` matching only on supported keys, and whether it named another one.

    A matching key outside :data:`SUPPORTED_KEYS` (or, in the Scheduled Procedure Step
    Sequence's item, outside :data:`SUPPORTED_STEP_KEYS`) becomes a return key only.
    """
    unsupported = False
    keys = []
    for key in query.keys:
        if key.kind is MatchKind.UNIVERSAL:
            keys.append(key)
        elif key.tag not in SUPPORTED_KEYS:
            unsupported = True
            keys.append(_universal(key))
        elif key.kind is MatchKind.SEQUENCE:
            items = []
            for item in key.items:
                if item.kind is not MatchKind.UNIVERSAL and item.tag not in SUPPORTED_STEP_KEYS:
                    unsupported = True
                    item = _universal(item)
                items.append(item)
            restricted = any(i.kind is not MatchKind.UNIVERSAL for i in items)
            kind = MatchKind.SEQUENCE if restricted else MatchKind.UNIVERSAL
            keys.append(dataclasses.replace(key, kind=kind, items=tuple(items)))
        else:
            keys.append(key)
    return Query(tuple(keys)), unsupported


def answer_for(
    entry: Dataset, identifier: Dataset, query: Query, query_charset: Any = None
) -> Dataset:
    """The response identifier: every requested key, zero length when the entry lacks it.

    Encoded in the entry's character set (its stored bytes reused) unless the query names
    another one every value fits in.
    """
    conditions = {key.tag: key for key in query.keys}
    own = entry.get(_CHARSET)
    own_value = own.value if own is not None and own.value else None
    wanted = query_charset.value if query_charset is not None and query_charset.value else None
    if wanted is None or _same_charset(wanted, own_value):
        answer = _answer_level(entry, identifier, conditions, raw=True)
        if own_value is not None:
            answer.SpecificCharacterSet = own_value
        _as_stored(answer)
        return answer
    answer = _answer_level(entry, identifier, conditions, raw=False)  # values as text
    if _encodes(answer, wanted):
        answer.SpecificCharacterSet = wanted
    elif own_value is not None:
        answer.SpecificCharacterSet = own_value
    return answer


def _as_stored(answer: Dataset) -> None:
    """Mark ``answer`` (and its items) as encoded like the store, in its own character set.

    pydicom then writes the stored elements' bytes as they are (no decoding, no
    re-encoding) when the presentation context is explicit VR little endian too: the
    answer's character set is the entry's, so the bytes are right as they are.
    """
    from pydicom.dataelem import DataElement

    answer.set_original_encoding(False, True, answer._character_set)
    for element in answer.elements():  # raw elements stay raw
        if isinstance(element, DataElement) and element.VR == "SQ":
            for item in element.value or ():
                _as_stored(item)


def _same_charset(first: Any, second: Any) -> bool:
    def terms(value: Any) -> list[str]:
        values = (
            value
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        )
        return [str(v or "").strip() for v in values]

    return terms(first) == terms(second)


def _answer_level(
    source: Dataset, requested: Dataset, conditions: dict[int, KeyCondition], *, raw: bool
) -> Dataset:
    """``requested``'s keys from ``source``; ``raw``: stored elements as they are."""
    from pydicom import Dataset
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence as DicomSequence

    answer = Dataset()
    for element in requested:
        tag = int(element.tag)
        if tag in NOT_KEYS or element.tag.group == 0x0002:
            continue
        if tag not in source:
            empty: Any = DicomSequence() if element.VR == "SQ" else None
            answer[tag] = DataElement(tag, element.VR, empty)
            continue
        stored_element = source.get_item(tag)  # not decoded yet when read from the store
        if element.VR != "SQ" or stored_element.VR != "SQ":
            answer[tag] = stored_element if raw else source[tag]
            continue
        present = source[tag]
        asked = list(element.value or ())
        stored = list(present.value or ())
        if not asked:  # a sequence asked for empty: answered whole
            if not raw:
                for item in stored:
                    for _ in item.iterall():  # decoded: written in the answer's charset
                        pass
            answer[tag] = DataElement(tag, "SQ", DicomSequence(stored))
            continue
        condition = conditions.get(tag)
        if condition is not None and condition.kind is MatchKind.SEQUENCE:
            stored = [i for i in stored if all(c.matches(i) for c in condition.items)]
        inner = {c.tag: c for c in condition.items} if condition is not None else {}
        items = [_answer_level(item, asked[0], inner, raw=raw) for item in stored]
        answer[tag] = DataElement(tag, "SQ", DicomSequence(items))
    return answer


def _encodes(dataset: Dataset, charset: Any) -> bool:
    """Whether every text value of ``dataset`` can be written in ``charset`` (None: ASCII)."""
    import warnings

    from pydicom.charset import convert_encodings, encode_string

    encodings = convert_encodings(charset) if charset else ["iso8859"]
    texts: list[str] = []
    for element in dataset.iterall():
        if element.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC") and element.value:
            value = element.value
            values = value if isinstance(value, list | tuple) else [value]
            texts.extend(str(v) for v in values)
    for text in texts:
        if charset is None:
            if not text.isascii():
                return False
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                encode_string(text, encodings)
        except (UnicodeError, LookupError, UserWarning, ValueError):
            return False
    return True

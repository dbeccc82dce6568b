"""The virtual film printer: a Print Management SCP (PS3.4 Annex H) that renders each
printed film box as a PNG.

It serves the Basic Grayscale and Basic Color Print Management Meta SOP Classes (H.3): the
Printer (H.4.8: N-GET, and N-EVENT-REPORT when its status changes), Basic Film Session
(H.4.1: N-CREATE, N-SET, N-DELETE, N-ACTION), Basic Film Box (H.4.2: N-CREATE, N-SET,
N-DELETE, N-ACTION) and the Basic Grayscale/Color Image Box (H.4.3, H.4.4: N-SET). A
request's Affected/Requested SOP Class names one of these; the presentation context is
the meta class's, and a class that is not a member of it is refused (0122).

State rules held per association (a film session lives as long as its association,
PS3.4 H.4.1.2): one film session; a film box needs it (its Referenced Film Session
Sequence must name it); a film box creates as many image boxes as its Image Display
Format has positions and returns them in the N-CREATE-RSP's Referenced Image Box
Sequence; an image box N-SET names a box that exists (0112 otherwise, also after its film
box or session was deleted) of the class the film box made (0119 otherwise); without
film session printing (``collation = false``) a second unprinted film box is refused
(C616). Printing (N-ACTION, Action Type 1, on a film box or the whole session) writes
``<spool>/<film session UID>/<film box UID>.png``, a JSON sidecar describing the job and
each received image as a Part 10 file (``<film box UID>-<position>.dcm``), and logs one
line per film. Statuses: PS3.7 Annex C (0106, 0107, 0110, 0111, 0112, 0116, 0119, 0120,
0121, 0122, 0123) and PS3.4 H.4 (B601, B602, B603, B605, C600, C616). (An instance UID
that is not a UID never reaches a handler: the DIMSE layer aborts on such a command.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...dimse.commands import CommandField
from ...dimse.primitives import DimseResponse, NEventReportRQ
from ...dimse.session import DimseSession, Request
from ...dimse.status import (
    INVALID_ATTRIBUTE_VALUE,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION_TYPE,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    UNRECOGNIZED_OPERATION,
    Status,
)
from ...errors import DicomWireError, DimseStatusError, ValidationError
from ...uids import EXPLICIT_VR_BIG_ENDIAN
from .model import (
    ACTION_PRINT,
    BASIC_COLOR_IMAGE_BOX,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    FILM_SIZES,
    IMAGE_BOX_OF_META,
    META_MEMBERS,
    PRINTER,
    PRINTER_EVENT_TYPES,
    PRINTER_INSTANCE,
    Layout,
    parse_density,
    parse_display_format,
)
from .render import FilmSpec, PrintedImage, render_film

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["PrintConfig", "PrintSCP", "PrintedFilm"]

log = logging.getLogger("dicomwire.services.print")

# PS3.7 Annex C statuses the print SOP classes use, and PS3.4 H.4's own.
ATTRIBUTE_LIST_ERROR = Status(0x0107)  # warning: unsupported attributes ignored
ATTRIBUTE_OUT_OF_RANGE = Status(0x0116)  # warning: a value the printer replaced
CLASS_INSTANCE_CONFLICT = Status(0x0119)
MISSING_ATTRIBUTE_VALUE = Status(0x0121)
DUPLICATE_SOP_INSTANCE = Status(0x0111)
SESSION_EMPTY_PAGE = Status(0xB602)  # film session has no image (empty page)
FILM_BOX_EMPTY_PAGE = Status(0xB603)  # film box has no image (empty page)
DENSITY_OUT_OF_RANGE = Status(0xB605)  # min/max density outside the printer's range
NO_FILM_BOXES = Status(0xC600)  # film session has no film box
UNPRINTED_FILM_BOX = Status(0xC616)  # an unprinted film box exists, collation unsupported
COLLATION_NOT_SUPPORTED = Status(0xB601)  # film session printing (collation) not supported

PrinterState = Literal["NORMAL", "WARNING", "FAILURE"]
#: How many printed films :attr:`PrintSCP.printed` remembers (the spool keeps them all).
KEPT_FILMS = 1000

#: Where the received images go (PS3.4 H.3 of older editions; retired, as DCMTK stores them).
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"
HARDCOPY_COLOR = "1.2.840.10008.5.1.1.30"


@dataclass(slots=True)
class PrintConfig:
    """The ``[print]`` table: the virtual printer's identity, status and capabilities.

    ``spool`` is where films are written (default: ``<storage root>/print``);
    ``pixels_per_inch`` sets the PNG's size (a 14INX17IN film at 40 is 560 x 680);
    ``min_density``/``max_density`` are the printer's range in hundredths of OD (a film
    box asking outside it gets B605); ``collation = false`` refuses film session printing
    (B601) and a second unprinted film box (C616); ``color = false`` serves grayscale only.
    """

    spool: Path | None = None
    printer_name: str = "DICOMWIRE"
    printer_status: PrinterState = "NORMAL"
    printer_status_info: str = "NORMAL"
    manufacturer: str = "dicomwire"
    model_name: str = "virtual film printer"
    film_sizes: list[str] = field(default_factory=lambda: list(FILM_SIZES))
    medium_types: list[str] = field(
        default_factory=lambda: ["PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM"]
    )
    film_destinations: list[str] = field(default_factory=lambda: ["MAGAZINE", "PROCESSOR"])
    default_film_size: str = "14INX17IN"
    min_density: int = 20
    max_density: int = 300
    max_copies: int = 99
    pixels_per_inch: float = 40.0
    collation: bool = True
    color: bool = True


@dataclass(slots=True)
class PrintedFilm:
    """One film the printer rendered: where its picture and sidecar are, what it held."""

    session_uid: str
    film_box_uid: str
    png: Path
    sidecar: Path
    images: int
    positions: int
    calling_ae: str


@dataclass(slots=True)
class _ImageBox:
    uid: str
    sop_class: str
    position: int
    attributes: dict[str, Any] = field(default_factory=dict)
    image: PrintedImage | None = None
    #: The image sequence item as received (kept as the printed object).
    item: Dataset | None = None


@dataclass(slots=True)
class _FilmBox:
    uid: str
    layout: Layout
    spec: FilmSpec
    attributes: dict[str, Any]
    image_boxes: list[_ImageBox]
    printed: bool = False


@dataclass(slots=True)
class _FilmSession:
    uid: str
    attributes: dict[str, Any]
    film_boxes: dict[str, _FilmBox] = field(default_factory=dict)


@dataclass(slots=True)
class _AssociationState:
    """What one association created: its film session, film boxes and image boxes."""

    session: _FilmSession | None = None
    image_boxes: dict[str, tuple[_FilmBox, _ImageBox]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


_FILM_SESSION_KEYWORDS = frozenset(
    (
        "NumberOfCopies",
        "PrintPriority",
        "MediumType",
        "FilmDestination",
        "FilmSessionLabel",
        "MemoryAllocation",
        "OwnerID",
        "Illumination",
        "ReflectedAmbientLight",
        "ReferencedPresentationLUTSequence",
    )
)
_FILM_BOX_KEYWORDS = frozenset(
    (
        "ImageDisplayFormat",
        "AnnotationDisplayFormatID",
        "FilmOrientation",
        "FilmSizeID",
        "MagnificationType",
        "SmoothingType",
        "BorderDensity",
        "EmptyImageDensity",
        "MinDensity",
        "MaxDensity",
        "Trim",
        "ConfigurationInformation",
        "Illumination",
        "ReflectedAmbientLight",
        "RequestedResolutionID",
        "ReferencedFilmSessionSequence",
        "ReferencedPresentationLUTSequence",
    )
)
_IMAGE_BOX_KEYWORDS = frozenset(
    (
        "ImageBoxPosition",
        "Polarity",
        "MagnificationType",
        "SmoothingType",
        "ConfigurationInformation",
        "RequestedImageSize",
        "RequestedDecimateCropBehavior",
        "BasicGrayscaleImageSequence",
        "BasicColorImageSequence",
        "ReferencedPresentationLUTSequence",
    )
)
_CLASS_NAMES = {
    BASIC_FILM_SESSION: "film session",
    BASIC_FILM_BOX: "film box",
    BASIC_GRAYSCALE_IMAGE_BOX: "grayscale image box",
    BASIC_COLOR_IMAGE_BOX: "color image box",
    PRINTER: "printer",
}
_ENUMERATED: dict[str, tuple[str, ...]] = {
    "PrintPriority": ("HIGH", "MED", "LOW"),
    "FilmOrientation": ("PORTRAIT", "LANDSCAPE"),
    "MagnificationType": ("REPLICATE", "BILINEAR", "CUBIC", "NONE"),
    "Polarity": ("NORMAL", "REVERSE"),
    "Trim": ("YES", "NO"),
}


PrintHandler = Callable[["PrintSCP", Request], Awaitable[DimseResponse]]


def _guarded(handler: PrintHandler) -> PrintHandler:
    """Every refusal logged once, naming the peer, the request and why; and a value
    pydicom decoded but that makes no sense (``ImageBoxPosition = "abc"``, an empty
    sequence) answered 0106 with that log line, never a traceback."""

    @functools.wraps(handler)
    async def guarded(self: PrintSCP, request: Request) -> DimseResponse:
        try:
            try:
                return await handler(self, request)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                raise _refuse(INVALID_ATTRIBUTE_VALUE, f"{type(exc).__name__}: {exc}") from None
        except DimseStatusError as exc:
            command = CommandField(request.message.command_field).name
            log.warning(
                "refused %s (%s %s) from %s with 0x%04X: %s",
                command.removesuffix("_RQ").replace("_", "-"),
                _CLASS_NAMES.get(request.message.sop_class_uid or "", "?"),
                request.message.sop_instance_uid or "-",
                request.negotiated.remote_ae_title,
                int(exc.status),
                exc.comment,
            )
            raise

    return guarded


def _refuse(status: int, why: str) -> DimseStatusError:
    """The failure status a request gets (:func:`_guarded` logs it)."""
    return DimseStatusError(status, why)


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip()


class PrintSCP:
    """The print handlers and the per-association print state (see the module docstring)."""

    def __init__(self, config: PrintConfig | None = None, spool: Path | None = None) -> None:
        self.config = config or PrintConfig()
        self.spool = Path(spool or self.config.spool or Path("data") / "print")
        self.printer_status: PrinterState = self.config.printer_status
        self.printer_status_info = self.config.printer_status_info
        #: The films printed since the start, the latest :data:`KEPT_FILMS` of them.
        self.printed: deque[PrintedFilm] = deque(maxlen=KEPT_FILMS)
        #: Print state by association; an association's state goes when it goes.
        self._states: weakref.WeakKeyDictionary[DimseSession, _AssociationState] = (
            weakref.WeakKeyDictionary()
        )
        #: Called with each film printed (after its PNG is written).
        self.on_printed: Callable[[PrintedFilm], Awaitable[None] | None] | None = None

    # -- plumbing ------------------------------------------------------------------

    def attach(self, session: DimseSession) -> None:
        """Know an association from its start (printer status events reach it)."""
        if any(
            c.accepted and c.abstract_syntax in META_MEMBERS
            for c in session.negotiated.contexts.values()
        ):
            self._states.setdefault(session, _AssociationState())

    def _state(self, request: Request) -> _AssociationState:
        meta = request.context.abstract_syntax
        sop_class = request.message.sop_class_uid or ""
        if sop_class not in META_MEMBERS.get(meta, ()):
            raise _refuse(
                SOP_CLASS_NOT_SUPPORTED,
                f"SOP class {sop_class} is not part of the context's meta SOP class {meta}",
            )
        return self._states.setdefault(request.session, _AssociationState())

    def _decode(self, request: Request, required: bool) -> Dataset:
        from pydicom import Dataset

        dataset = request.decode()
        if dataset is None:
            if required:
                raise _refuse(MISSING_ATTRIBUTE, "the request has no data set")
            return Dataset()
        return dataset

    @staticmethod
    def _new_uid() -> str:
        from pydicom.uid import generate_uid

        return str(generate_uid(prefix=None))

    # -- handlers (one per command, dispatching on the SOP class) -----------------

    @_guarded
    async def handle_n_get(self, request: Request) -> DimseResponse:
        """N-GET: the Printer's status and identity (PS3.4 H.4.8.1.2)."""
        self._state(request)
        primitive: Any = request.primitive
        if request.message.sop_class_uid != PRINTER:
            raise _refuse(UNRECOGNIZED_OPERATION, "N-GET is served for the Printer SOP class only")
        if primitive.requested_sop_instance_uid != PRINTER_INSTANCE:
            raise _refuse(
                NO_SUCH_SOP_INSTANCE,
                f"printer instance {primitive.requested_sop_instance_uid}",
            )
        from pydicom import Dataset

        printer = Dataset()
        printer.PrinterStatus = self.printer_status
        printer.PrinterStatusInfo = self.printer_status_info
        printer.PrinterName = self.config.printer_name
        printer.Manufacturer = self.config.manufacturer
        printer.ManufacturerModelName = self.config.model_name
        printer.SoftwareVersions = "dicomwire"
        wanted = primitive.attribute_identifier_list
        if wanted:
            tags = {int(tag) for tag in wanted}
            for element in list(printer):
                if int(element.tag) not in tags:
                    del printer[element.tag]
        return request.primitive.response(0, printer)

    @_guarded
    async def handle_n_create(self, request: Request) -> DimseResponse:
        state = self._state(request)
        sop_class = request.message.sop_class_uid
        if sop_class == BASIC_FILM_SESSION:
            return self._create_film_session(request, state)
        if sop_class == BASIC_FILM_BOX:
            return self._create_film_box(request, state)
        raise _refuse(UNRECOGNIZED_OPERATION, f"N-CREATE is not served for {sop_class}")

    @_guarded
    async def handle_n_set(self, request: Request) -> DimseResponse:
        state = self._state(request)
        sop_class = request.message.sop_class_uid
        uid = request.message.sop_instance_uid or ""
        if sop_class == BASIC_FILM_SESSION:
            session = self._session(state, uid)
            dataset = self._decode(request, required=True)
            warnings: set[int] = set()
            attributes = self._film_session_attributes(dataset, warnings)
            session.attributes.update(attributes)
            return self._answer(request, warnings)
        if sop_class == BASIC_FILM_BOX:
            film_box = self._film_box(state, uid)
            dataset = self._decode(request, required=True)
            warnings = set()
            self._apply_film_box(film_box, dataset, warnings, creating=False)
            return self._answer(request, warnings)
        if sop_class in (BASIC_GRAYSCALE_IMAGE_BOX, BASIC_COLOR_IMAGE_BOX):
            return self._set_image_box(request, state, sop_class, uid)
        raise _refuse(UNRECOGNIZED_OPERATION, f"N-SET is not served for {sop_class}")

    @_guarded
    async def handle_n_action(self, request: Request) -> DimseResponse:
        state = self._state(request)
        primitive: Any = request.primitive
        sop_class = request.message.sop_class_uid
        uid = primitive.requested_sop_instance_uid
        if sop_class not in (BASIC_FILM_SESSION, BASIC_FILM_BOX):
            raise _refuse(UNRECOGNIZED_OPERATION, f"N-ACTION is not served for {sop_class}")
        if primitive.action_type_id != ACTION_PRINT:
            raise _refuse(NO_SUCH_ACTION_TYPE, f"action type {primitive.action_type_id}")
        calling = request.negotiated.remote_ae_title
        if sop_class == BASIC_FILM_BOX:
            film_box = self._film_box(state, uid)
            assert state.session is not None
            status = await self._print([film_box], state.session, calling)
            return request.primitive.response(status)
        session = self._session(state, uid)
        if not session.film_boxes:
            raise _refuse(NO_FILM_BOXES, "the film session has no film box to print")
        if not self.config.collation:
            unprinted = [b for b in session.film_boxes.values() if not b.printed]
            await self._print(unprinted, session, calling)
            return request.primitive.response(COLLATION_NOT_SUPPORTED)
        status = await self._print(list(session.film_boxes.values()), session, calling)
        if status == FILM_BOX_EMPTY_PAGE:
            status = SESSION_EMPTY_PAGE
        return request.primitive.response(status)

    @_guarded
    async def handle_n_delete(self, request: Request) -> DimseResponse:
        state = self._state(request)
        sop_class = request.message.sop_class_uid
        uid = request.message.sop_instance_uid or ""
        if sop_class == BASIC_FILM_SESSION:
            session = self._session(state, uid)
            for film_box in list(session.film_boxes.values()):
                self._drop_film_box(state, film_box)
            state.session = None
            state.deleted.add(uid)
            log.info("film session %s deleted", uid)
            return request.primitive.response(0)
        if sop_class == BASIC_FILM_BOX:
            film_box = self._film_box(state, uid)
            assert state.session is not None
            del state.session.film_boxes[uid]
            self._drop_film_box(state, film_box)
            return request.primitive.response(0)
        raise _refuse(UNRECOGNIZED_OPERATION, f"N-DELETE is not served for {sop_class}")

    # -- film session ----------------------------------------------------------------

    def _session(self, state: _AssociationState, uid: str | None) -> _FilmSession:
        session = state.session
        if session is None or session.uid != uid:
            why = "was deleted" if uid in state.deleted else "does not exist"
            raise _refuse(NO_SUCH_SOP_INSTANCE, f"film session {uid} {why}")
        return session

    def _create_film_session(self, request: Request, state: _AssociationState) -> DimseResponse:
        primitive: Any = request.primitive
        if state.session is not None:
            status = (
                DUPLICATE_SOP_INSTANCE
                if primitive.affected_sop_instance_uid == state.session.uid
                else PROCESSING_FAILURE
            )
            raise _refuse(status, "this association already has a film session")
        dataset = self._decode(request, required=False)
        warnings: set[int] = set()
        attributes = {
            "NumberOfCopies": 1,
            "PrintPriority": "MED",
            "MediumType": self.config.medium_types[0] if self.config.medium_types else "PAPER",
            "FilmDestination": (
                self.config.film_destinations[0] if self.config.film_destinations else "MAGAZINE"
            ),
        }
        attributes.update(self._film_session_attributes(dataset, warnings))
        uid = primitive.affected_sop_instance_uid or self._new_uid()
        state.session = _FilmSession(uid, attributes)
        state.deleted.discard(uid)
        log.info("film session %s created for %s", uid, request.negotiated.remote_ae_title)
        return self._answer(request, warnings, self._dataset(attributes), uid)

    def _film_session_attributes(self, dataset: Dataset, warnings: set[int]) -> dict[str, Any]:
        """The film session module's values checked (PS3.3 C.13.1)."""
        attributes: dict[str, Any] = {}
        self._unsupported(dataset, _FILM_SESSION_KEYWORDS, warnings)
        if "NumberOfCopies" in dataset:
            copies = dataset.NumberOfCopies
            try:
                number = int(copies)
            except (TypeError, ValueError):
                raise _refuse(INVALID_ATTRIBUTE_VALUE, f"number of copies {copies!r}") from None
            if not 1 <= number <= self.config.max_copies:
                raise _refuse(INVALID_ATTRIBUTE_VALUE, f"number of copies {number}")
            attributes["NumberOfCopies"] = number
        priority = self._enumerated(dataset, "PrintPriority")
        if priority is not None:
            attributes["PrintPriority"] = priority
        for keyword, supported in (
            ("MediumType", self.config.medium_types),
            ("FilmDestination", self.config.film_destinations),
        ):
            value = _text(dataset, keyword)
            if value is None:
                continue
            upper = value.upper()
            bin_number = keyword == "FilmDestination" and upper.startswith("BIN_")
            if bin_number or upper in (s.upper() for s in supported):
                attributes[keyword] = upper
            else:  # the printer's default stays: a warning, as PS3.4 H.4.1.2.1.2 allows
                log.info("%s %r not supported: the default is used (0116)", keyword, value)
                warnings.add(ATTRIBUTE_OUT_OF_RANGE)
        for keyword in ("FilmSessionLabel", "MemoryAllocation", "OwnerID"):
            value = _text(dataset, keyword)
            if value is not None:
                attributes[keyword] = value
        return attributes

    # -- film box --------------------------------------------------------------------

    def _film_box(self, state: _AssociationState, uid: str | None) -> _FilmBox:
        session = state.session
        film_box = session.film_boxes.get(uid or "") if session is not None else None
        if film_box is None:
            why = "was deleted" if uid in state.deleted else "does not exist"
            raise _refuse(NO_SUCH_SOP_INSTANCE, f"film box {uid} {why}")
        return film_box

    def _create_film_box(self, request: Request, state: _AssociationState) -> DimseResponse:
        dataset = self._decode(request, required=True)
        references = dataset.get("ReferencedFilmSessionSequence")
        if not references:
            raise _refuse(MISSING_ATTRIBUTE, "no Referenced Film Session Sequence")
        referenced = str(references[0].get("ReferencedSOPInstanceUID", ""))
        session = state.session
        if session is None or referenced != session.uid:
            raise _refuse(
                INVALID_ATTRIBUTE_VALUE, f"film box references film session {referenced or '?'}"
            )
        if not self.config.collation and any(not b.printed for b in session.film_boxes.values()):
            raise _refuse(UNPRINTED_FILM_BOX, "an unprinted film box exists")
        if "ImageDisplayFormat" not in dataset:
            raise _refuse(MISSING_ATTRIBUTE, "no Image Display Format")
        display_format = _text(dataset, "ImageDisplayFormat")
        if display_format is None:
            raise _refuse(MISSING_ATTRIBUTE_VALUE, "empty Image Display Format")
        try:
            layout = parse_display_format(display_format)
        except ValidationError as exc:
            raise _refuse(INVALID_ATTRIBUTE_VALUE, str(exc)) from None
        primitive: Any = request.primitive
        uid = primitive.affected_sop_instance_uid or self._new_uid()
        if uid in session.film_boxes or uid == session.uid:
            raise _refuse(DUPLICATE_SOP_INSTANCE, f"film box {uid} exists")
        spec = FilmSpec(
            layout,
            film_size=self.config.default_film_size,
            min_density=None,
            max_density=None,
        )
        film_box = _FilmBox(uid, layout, spec, {"ImageDisplayFormat": layout.text}, [])
        warnings: set[int] = set()
        self._apply_film_box(film_box, dataset, warnings, creating=True)
        box_class = IMAGE_BOX_OF_META[request.context.abstract_syntax]
        for position in range(1, layout.count + 1):
            image_box = _ImageBox(self._new_uid(), box_class, position)
            film_box.image_boxes.append(image_box)
            state.image_boxes[image_box.uid] = (film_box, image_box)
        session.film_boxes[uid] = film_box
        log.info(
            "film box %s created: %s, %s %s, %d image boxes",
            uid,
            layout.text,
            spec.film_size,
            spec.orientation,
            layout.count,
        )
        from pydicom import Dataset

        answer = self._dataset(film_box.attributes)
        reference = Dataset()
        reference.ReferencedSOPClassUID = BASIC_FILM_SESSION
        reference.ReferencedSOPInstanceUID = session.uid
        answer.ReferencedFilmSessionSequence = [reference]
        boxes = []
        for image_box in film_box.image_boxes:
            item = Dataset()
            item.ReferencedSOPClassUID = image_box.sop_class
            item.ReferencedSOPInstanceUID = image_box.uid
            boxes.append(item)
        answer.ReferencedImageBoxSequence = boxes
        return self._answer(request, warnings, answer, uid)

    def _apply_film_box(
        self, film_box: _FilmBox, dataset: Dataset, warnings: set[int], *, creating: bool
    ) -> None:
        """Check and take the film box module's values (PS3.3 C.13.3)."""
        self._unsupported(dataset, _FILM_BOX_KEYWORDS, warnings)
        if not creating and "ImageDisplayFormat" in dataset:
            raise _refuse(INVALID_ATTRIBUTE_VALUE, "Image Display Format is set at creation")
        spec = film_box.spec
        orientation = self._enumerated(dataset, "FilmOrientation")
        if orientation is not None:
            spec.orientation = orientation
        magnification = self._enumerated(dataset, "MagnificationType")
        if magnification is not None:
            spec.magnification = magnification
        trim = self._enumerated(dataset, "Trim")
        if trim is not None:
            film_box.attributes["Trim"] = trim
        size = _text(dataset, "FilmSizeID")
        if size is not None:
            if size.upper() not in (s.upper() for s in self.config.film_sizes) or (
                size.upper() not in FILM_SIZES
            ):
                log.info("film size %r not supported: %s used (0116)", size, spec.film_size)
                warnings.add(ATTRIBUTE_OUT_OF_RANGE)
            else:
                spec.film_size = size.upper()
        for keyword in ("BorderDensity", "EmptyImageDensity"):
            if keyword in dataset:
                try:
                    density = parse_density(dataset.get(keyword), 0)
                except ValidationError as exc:
                    raise _refuse(INVALID_ATTRIBUTE_VALUE, f"{keyword}: {exc}") from None
                if keyword == "BorderDensity":
                    spec.border_density = density
                else:
                    spec.empty_density = density
                film_box.attributes[keyword] = str(density)
        low, high = self.config.min_density, self.config.max_density
        for keyword in ("MinDensity", "MaxDensity"):
            if keyword not in dataset or dataset.get(keyword) in (None, ""):
                continue
            try:
                value = int(dataset.get(keyword))
            except (TypeError, ValueError):
                raise _refuse(
                    INVALID_ATTRIBUTE_VALUE, f"{keyword} {dataset.get(keyword)!r}"
                ) from None
            if not low <= value <= high:
                log.info("%s %d outside %d..%d: clamped (B605)", keyword, value, low, high)
                warnings.add(DENSITY_OUT_OF_RANGE)
                value = min(high, max(low, value))
            film_box.attributes[keyword] = value
            if keyword == "MinDensity":
                spec.min_density = value
            else:
                spec.max_density = value
        for keyword in ("SmoothingType", "ConfigurationInformation", "AnnotationDisplayFormatID"):
            text = _text(dataset, keyword)
            if text is not None:
                film_box.attributes[keyword] = text
        film_box.attributes.update(
            FilmOrientation=spec.orientation,
            FilmSizeID=spec.film_size,
            MagnificationType=spec.magnification,
            BorderDensity=str(spec.border_density),
            EmptyImageDensity=str(spec.empty_density),
        )

    def _drop_film_box(self, state: _AssociationState, film_box: _FilmBox) -> None:
        state.deleted.add(film_box.uid)
        for image_box in film_box.image_boxes:
            state.image_boxes.pop(image_box.uid, None)
            state.deleted.add(image_box.uid)

    # -- image box -------------------------------------------------------------------

    def _set_image_box(
        self, request: Request, state: _AssociationState, sop_class: str | None, uid: str
    ) -> DimseResponse:
        found = state.image_boxes.get(uid)
        if found is None:
            why = "was deleted" if uid in state.deleted else "does not exist"
            raise _refuse(NO_SUCH_SOP_INSTANCE, f"image box {uid} {why}")
        _film_box, image_box = found
        if sop_class != image_box.sop_class:
            raise _refuse(
                CLASS_INSTANCE_CONFLICT, f"image box {uid} is a {image_box.sop_class} instance"
            )
        dataset = self._decode(request, required=True)
        warnings: set[int] = set()
        self._unsupported(dataset, _IMAGE_BOX_KEYWORDS, warnings)
        position = dataset.get("ImageBoxPosition")
        if position is None:
            raise _refuse(MISSING_ATTRIBUTE, "no Image Box Position")
        if int(position) != image_box.position:
            raise _refuse(
                INVALID_ATTRIBUTE_VALUE,
                f"image box position {position}, the box is at {image_box.position}",
            )
        color = sop_class == BASIC_COLOR_IMAGE_BOX
        keyword = "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence"
        sequence = dataset.get(keyword)
        if not sequence:
            raise _refuse(MISSING_ATTRIBUTE, f"no {keyword}")
        polarity = self._enumerated(dataset, "Polarity") or "NORMAL"
        magnification = self._enumerated(dataset, "MagnificationType")
        image = self._image(sequence[0], color, request.message.transfer_syntax)
        image.polarity = polarity
        image.magnification = magnification
        image_box.image = image
        image_box.item = sequence[0]
        image_box.attributes = {
            "ImageBoxPosition": image_box.position,
            "Polarity": polarity,
            "Rows": image.rows,
            "Columns": image.columns,
            "PhotometricInterpretation": image.photometric,
            "BitsStored": image.bits_stored,
        }
        if magnification is not None:
            image_box.attributes["MagnificationType"] = magnification
        return self._answer(request, warnings)

    def _image(self, item: Dataset, color: bool, transfer_syntax: str) -> PrintedImage:
        """The pixels of an image sequence item, checked (PS3.3 C.13.5.1 and C.13.6.1)."""
        needed = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelData")
        for keyword in (*needed, "SamplesPerPixel", "PhotometricInterpretation", "HighBit"):
            if keyword not in item:
                raise _refuse(MISSING_ATTRIBUTE, f"image sequence item has no {keyword}")
        rows, columns = int(item.Rows), int(item.Columns)
        samples = int(item.SamplesPerPixel)
        bits_allocated, bits_stored = int(item.BitsAllocated), int(item.BitsStored)
        photometric = str(item.PhotometricInterpretation).strip().upper()
        if color:
            ok = samples == 3 and photometric == "RGB" and bits_allocated == 8
            expected = "3 samples of 8 bits, RGB"
        else:
            ok = (
                samples == 1
                and photometric in ("MONOCHROME1", "MONOCHROME2")
                and (bits_allocated, bits_stored) in ((8, 8), (16, 12))
            )
            expected = "1 sample, MONOCHROME1/2, 8 bits or 12 in 16"
        if not ok or not 1 <= rows <= 8192 or not 1 <= columns <= 8192:
            raise _refuse(
                INVALID_ATTRIBUTE_VALUE,
                f"image {rows}x{columns}, {samples} x {bits_stored}/{bits_allocated} bit "
                f"{photometric}: expected {expected}",
            )
        if int(item.get("PixelRepresentation", 0) or 0) != 0:
            raise _refuse(INVALID_ATTRIBUTE_VALUE, "pixel representation must be unsigned")
        pixels = bytes(item.PixelData)
        size = rows * columns * samples * (bits_allocated // 8)
        if len(pixels) < size:
            raise _refuse(
                INVALID_ATTRIBUTE_VALUE, f"pixel data has {len(pixels)} bytes, {size} needed"
            )
        if bits_allocated == 16 and transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
            swapped = bytearray(pixels[:size])
            swapped[0::2], swapped[1::2] = pixels[1:size:2], pixels[0:size:2]
            pixels = bytes(swapped)
        return PrintedImage(
            rows,
            columns,
            samples,
            bits_allocated,
            bits_stored,
            photometric,
            pixels[:size],
            planar_configuration=int(item.get("PlanarConfiguration", 0) or 0),
        )

    # -- printing --------------------------------------------------------------------

    async def _print(
        self, film_boxes: Iterable[_FilmBox], session: _FilmSession, calling: str
    ) -> Status:
        """Render each film box; B603 when one had no image at all (an empty page)."""
        status = Status(0)
        for film_box in film_boxes:
            images = {b.position: b.image for b in film_box.image_boxes if b.image is not None}
            if not images:
                status = FILM_BOX_EMPTY_PAGE
            try:
                film = await asyncio.to_thread(self._write_film, film_box, session, images, calling)
            except OSError as exc:
                raise _refuse(PROCESSING_FAILURE, f"cannot write the film: {exc}") from None
            film_box.printed = True
            self.printed.append(film)
            log.info(
                "printed film %s of session %s for %s: %s, %d of %d images, %s",
                film_box.uid,
                session.uid,
                calling,
                film_box.layout.text,
                film.images,
                film.positions,
                film.png,
            )
            if self.on_printed is not None:
                outcome = self.on_printed(film)
                if outcome is not None:
                    await outcome
        return status

    def _write_film(
        self,
        film_box: _FilmBox,
        session: _FilmSession,
        images: dict[int, PrintedImage],
        calling: str,
    ) -> PrintedFilm:
        folder = self.spool / session.uid
        folder.mkdir(parents=True, exist_ok=True)
        rendered = render_film(
            film_box.spec,
            images,
            pixels_per_inch=self.config.pixels_per_inch,
            printer_min_density=self.config.min_density,
            printer_max_density=self.config.max_density,
        )
        png = folder / f"{film_box.uid}.png"
        partial = png.with_suffix(".png.part")
        rendered.image.save(partial, format="PNG")
        partial.replace(png)
        sidecar = png.with_suffix(".json")
        job = {
            "printed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "calling_ae": calling,
            "printer": self.config.printer_name,
            "film_session": {"uid": session.uid, **session.attributes},
            "film_box": {"uid": film_box.uid, **film_box.attributes},
            "png": png.name,
            "size": list(rendered.image.size),
            "image_boxes": [
                {
                    "uid": b.uid,
                    "sop_class": b.sop_class,
                    "position": b.position,
                    "cell": list(rendered.cells[b.position - 1]),
                    **b.attributes,
                }
                for b in film_box.image_boxes
            ],
        }
        job["objects"] = self._write_objects(folder, film_box, calling)
        sidecar.write_text(json.dumps(job, indent=2, default=str))
        return PrintedFilm(
            session.uid,
            film_box.uid,
            png,
            sidecar,
            len(images),
            film_box.layout.count,
            calling,
        )

    @staticmethod
    def _write_objects(folder: Path, film_box: _FilmBox, calling: str) -> list[str]:
        """Each image box's received image as a Part 10 file, as a print SCP stores them:
        a Hardcopy Grayscale (or Color) Image, ``<film box UID>-<position>.dcm``."""
        from pydicom import Dataset
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        written = []
        for box in film_box.image_boxes:
            if box.item is None:
                continue
            hardcopy = Dataset()
            hardcopy.update(box.item)
            color = box.sop_class == BASIC_COLOR_IMAGE_BOX
            hardcopy.SOPClassUID = HARDCOPY_COLOR if color else HARDCOPY_GRAYSCALE
            hardcopy.SOPInstanceUID = box.uid
            hardcopy.file_meta = FileMetaDataset()
            hardcopy.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            hardcopy.file_meta.SourceApplicationEntityTitle = calling
            path = folder / f"{film_box.uid}-{box.position}.dcm"
            hardcopy.save_as(path, enforce_file_format=True)
            written.append(path.name)
        return written

    # -- printer status events ---------------------------------------------------------

    async def set_printer_status(self, status: PrinterState, info: str = "") -> int:
        """Change the printer's status and report it (N-EVENT-REPORT) on every association.

        Returns how many associations acknowledged the report.
        """
        if status not in PRINTER_EVENT_TYPES:
            raise ValidationError(f"printer status {status!r}: NORMAL, WARNING or FAILURE")
        changed = (status, info or status) != (self.printer_status, self.printer_status_info)
        self.printer_status, self.printer_status_info = status, info or status
        if not changed:
            return 0
        from pydicom import Dataset

        reported = 0
        for session in list(self._states):
            if not session.association.is_established:
                continue
            context = next(
                (
                    c
                    for c in session.negotiated.contexts.values()
                    if c.accepted and c.abstract_syntax in META_MEMBERS
                ),
                None,
            )
            if context is None:
                continue
            information = None
            if status != "NORMAL":
                information = Dataset()
                information.PrinterStatusInfo = self.printer_status_info
                information.PrinterName = self.config.printer_name
            report = NEventReportRQ(
                PRINTER, PRINTER_INSTANCE, PRINTER_EVENT_TYPES[status], dataset=information
            )
            try:
                operation = await session.send(report, context.context_id)
                answer = await asyncio.wait_for(operation.wait(), 30)
            except (DicomWireError, TimeoutError) as exc:
                log.warning(
                    "printer status report to %s failed: %s",
                    session.negotiated.remote_ae_title,
                    exc,
                )
                continue
            log.info(
                "printer status %s (%s) reported to %s: 0x%04X",
                status,
                self.printer_status_info,
                session.negotiated.remote_ae_title,
                int(answer.status),
            )
            reported += 1
        return reported

    # -- helpers -----------------------------------------------------------------------

    def _enumerated(self, dataset: Dataset, keyword: str) -> str | None:
        value = _text(dataset, keyword)
        if value is None:
            return None
        upper = value.upper()
        if upper not in _ENUMERATED[keyword]:
            raise _refuse(INVALID_ATTRIBUTE_VALUE, f"{keyword} {value!r}")
        return upper

    @staticmethod
    def _unsupported(dataset: Dataset, known: frozenset[str], warnings: set[int]) -> None:
        extra = [e.keyword or str(e.tag) for e in dataset if e.keyword not in known]
        if extra:
            log.info("attributes ignored (0107): %s", ", ".join(extra))
            warnings.add(ATTRIBUTE_LIST_ERROR)

    @staticmethod
    def _dataset(attributes: dict[str, Any]) -> Dataset:
        from pydicom import Dataset

        dataset = Dataset()
        for keyword, value in attributes.items():
            with contextlib.suppress(ValueError, TypeError):
                setattr(dataset, keyword, value)
        return dataset

    @staticmethod
    def _answer(
        request: Request,
        warnings: set[int],
        dataset: Dataset | None = None,
        uid: str | None = None,
    ) -> DimseResponse:
        """Success, or the most telling warning (PS3.4 H.4 ones before the general ones)."""
        status = max(warnings) if warnings else 0
        fields: dict[str, Any] = {}
        if uid is not None:
            fields["affected_sop_instance_uid"] = uid
        return request.primitive.response(status, dataset, **fields)

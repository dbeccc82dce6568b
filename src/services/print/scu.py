"""The Print Management SCU a modality drives (PS3.4 Annex H.4, the scanner's sequence).

:func:`print_images` opens one association proposing a Basic Grayscale (or Color) Print
Management Meta SOP Class and runs the steps of :class:`PrintJob`, each also callable on
its own for testing printers:

1. N-GET the Printer (H.4.8.1.2): Printer Status NORMAL continues, WARNING continues and
   is reported, FAILURE fails the job;
2. N-CREATE the Film Session (H.4.1.2.1): Number of Copies, Print Priority, Medium Type,
   Film Destination;
3. per film: N-CREATE a Film Box (H.4.2.2.1) with the Image Display Format and film
   attributes, whose N-CREATE-RSP lists the image boxes; N-SET each Image Box (H.4.3.1.2,
   H.4.4.1.2) with the image converted to the printer's form (:func:`prepare_image`);
   N-ACTION print on the Film Box (H.4.2.2.4);
4. N-DELETE the Film Session.

Warnings: those of N-ACTION print (B603, B604, B609, B60A) are reported and the job goes
on; a warning to a create or set (0107, 0116, B605...) goes on only when it is among
``accept_warnings``, as the scanner's "accepted when configured". A failure status fails
the job. The printer's N-EVENT-REPORTs (H.4.8.1.1: NORMAL 1, WARNING 2, FAILURE 3) are
accepted at any time on the same association and recorded. A response that does not come
within the DIMSE timeout aborts the association and fails the job with that reason.
"""

from __future__ import annotations

import array
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...dimse.commands import CommandField
from ...dimse.session import Handler, Request
from ...dimse.status import Category, ServiceClass, Status
from ...errors import DicomWireError, DimseStatusError, LocalProtocolError
from ...ul.association import Timeouts
from ...ul.tls import TLSConfig
from ..service import ScuActivity, StatusReaction
from .model import (
    ACTION_PRINT,
    BASIC_COLOR_IMAGE_BOX,
    BASIC_COLOR_PRINT_META,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    PRINTER,
    PRINTER_INSTANCE,
    PRINTER_STATUS_EVENT,
    parse_display_format,
)

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..client import Client, NResult

__all__ = [
    "PRINT_ACTIVITY",
    "FilmResult",
    "PrintJob",
    "PrintOptions",
    "PrintResult",
    "PrinterEvent",
    "prepare_image",
    "print_images",
]

log = logging.getLogger("dicomwire.services.print")

#: N-ACTION print warnings the job always goes on after (reported): PS3.4 H.4.2.2.4.
PRINT_WARNINGS = frozenset((0xB603, 0xB604, 0xB609, 0xB60A))
#: What ``--accept-warnings`` accepts: the scanner's configurable ones.
CONFIGURABLE_WARNINGS = frozenset((0x0001, 0x0107, 0x0116, 0xB605))

#: What PrintJob._check (and ``dicomwire print``) do with the status of each request.
PRINT_ACTIVITY = ScuActivity(
    "Print films",
    "dicomwire print; print_images",
    (BASIC_GRAYSCALE_PRINT_META, BASIC_COLOR_PRINT_META),
    "N-GET, N-CREATE, N-SET, N-ACTION, N-DELETE",
    (
        StatusReaction(Category.SUCCESS, "the step is done; print exits 0"),
        StatusReaction(
            Category.WARNING,
            "to the print N-ACTION: the film is printed with the warning (logged, a "
            "`warning:` line); print exits 0. To another request: as other warnings",
            tuple(sorted(PRINT_WARNINGS)),
        ),
        StatusReaction(
            Category.WARNING,
            "an error (`warning not accepted`), print exits 1; unless accepted "
            "(--accept-warnings: "
            + ", ".join(f"{code:04X}" for code in sorted(CONFIGURABLE_WARNINGS))
            + "; --accept-warning HEX): then logged, listed as `warning:`, print exits 0",
        ),
        StatusReaction(
            Category.FAILURE,
            "DimseStatusError naming the request and its Error Comment; the film is not "
            "printed; print exits 1",
        ),
    ),
)


@dataclass(slots=True)
class PrintOptions:
    """How to print: film session and film box attributes (PS3.3 C.13.1, C.13.3).

    ``None`` leaves an attribute out (the printer's default). ``bits`` is 8 or 12 (the
    grayscale image box's Bits Stored). ``accept_warnings`` are the create/set warnings
    the job goes on after.
    """

    display_format: str = "STANDARD\\1,1"
    film_size: str | None = "14INX17IN"
    orientation: str | None = "PORTRAIT"
    copies: int = 1
    priority: str | None = None
    medium: str | None = None
    destination: str | None = None
    session_label: str | None = None
    magnification: str | None = None
    smoothing: str | None = None
    border_density: str | None = None
    empty_density: str | None = None
    min_density: int | None = None
    max_density: int | None = None
    trim: str | None = None
    configuration: str | None = None
    polarity: str | None = None
    color: bool = False
    bits: int = 8
    accept_warnings: frozenset[int] = frozenset()

    @property
    def meta_sop_class(self) -> str:
        return BASIC_COLOR_PRINT_META if self.color else BASIC_GRAYSCALE_PRINT_META

    @property
    def image_box_class(self) -> str:
        return BASIC_COLOR_IMAGE_BOX if self.color else BASIC_GRAYSCALE_IMAGE_BOX


@dataclass(slots=True)
class PrinterEvent:
    """A printer status N-EVENT-REPORT received during the job."""

    status: str
    info: str | None
    event_type_id: int


@dataclass(slots=True)
class FilmResult:
    """What happened to one film: its images, the print status and warnings, or the error."""

    number: int
    images: list[str]
    film_box_uid: str | None = None
    status: Status | None = None
    warnings: list[Status] = field(default_factory=list)
    error: str | None = None

    @property
    def printed(self) -> bool:
        return self.status is not None and not self.status.is_failure and self.error is None


@dataclass(slots=True)
class PrintResult:
    """The job: printer status, each film, events, warnings, and why it failed (if it did)."""

    ok: bool = False
    printer_status: str | None = None
    printer_status_info: str | None = None
    session_uid: str | None = None
    films: list[FilmResult] = field(default_factory=list)
    events: list[PrinterEvent] = field(default_factory=list)
    warnings: list[tuple[str, Status]] = field(default_factory=list)
    reason: str | None = None


# --------------------------------------------------------------------------- images


def _pixel_values(dataset: Dataset) -> tuple[list[int] | array.array[int], int]:
    """The first frame's stored values (unsigned or signed ints) and its samples per pixel."""
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    count = rows * columns * samples
    meta = getattr(dataset, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "1.2.840.10008.1.2.1")
    native = syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    if not native or "PixelData" not in dataset:
        try:  # compressed pixel data: pydicom's decoders (numpy and a plugin) if present
            pixels = dataset.pixel_array
        except Exception as exc:
            raise LocalProtocolError(f"cannot read the pixel data ({syntax}): {exc}") from None
        flat = pixels.reshape(-1).tolist()
        return [int(v) for v in flat[:count]], samples
    allocated = int(dataset.BitsAllocated)
    stored = int(dataset.get("BitsStored", allocated) or allocated)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    raw = bytes(dataset.PixelData)
    if allocated == 8:
        values: array.array[int] = array.array("b" if signed else "B", raw[:count])
    elif allocated in (16, 32):
        code = {16: "H", 32: "I"}[allocated]
        size = array.array(code).itemsize
        values = array.array(code)
        values.frombytes(raw[: count * size])
        big = syntax == "1.2.840.10008.1.2.2"
        if big != (sys.byteorder == "big"):
            values.byteswap()
    else:
        raise LocalProtocolError(f"{allocated} bits allocated is not supported")
    if len(values) < count:
        raise LocalProtocolError(f"pixel data holds {len(values)} of {count} values")
    if allocated > 8 and (stored < allocated or signed):
        mask = (1 << stored) - 1
        sign = 1 << (stored - 1)
        if signed:
            return [((v & mask) ^ sign) - sign for v in values[:count]], samples
        return [v & mask for v in values[:count]], samples
    return values[:count] if len(values) > count else values, samples


def _first(value: Any) -> float | None:
    """The first value of a possibly multi-valued number (Window Center, Rescale Slope)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes | int | float) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _grey_lut(dataset: Dataset, low: int, high: int, top: int) -> list[int]:
    """Stored value (low..high) -> output value 0..top: Modality LUT, VOI, MONOCHROME1.

    PS3.3 C.11.1 (Rescale Slope/Intercept), C.11.2.1.2.1 (the linear window function),
    C.11.2.1.1 (a VOI LUT Sequence when there is no window); without either an image of
    at most 8 bits prints its whole range, a deeper one the range its pixels use.
    """
    slope = _first(dataset.get("RescaleSlope")) or 1.0
    intercept = _first(dataset.get("RescaleIntercept")) or 0.0
    center = _first(dataset.get("WindowCenter"))
    width = _first(dataset.get("WindowWidth"))
    modality = [v * slope + intercept for v in range(low, high + 1)]
    voi_lut = dataset.get("VOILUTSequence")
    if (center is None or width is None or width < 1) and voi_lut:
        item = voi_lut[0]
        entries, first_mapped, lut_bits = (int(x) for x in item.LUTDescriptor)
        raw = item.get("LUTData")
        data: list[int] = []
        if isinstance(raw, bytes | bytearray):  # OW: 16-bit words (8-bit LUTs too, padded)
            words = array.array("H")
            words.frombytes(bytes(raw[: len(raw) // 2 * 2]))
            if sys.byteorder == "big":
                words.byteswap()
            data = list(words)
        elif raw is not None:
            data = [int(x) for x in (raw if not isinstance(raw, int | float | str) else [raw])]
        del lut_bits
        if data:
            entries = entries or 65536
            maximum = max(data) or 1
            out = []
            for m in modality:
                index = min(max(int(m) - first_mapped, 0), min(entries, len(data)) - 1)
                out.append(round(data[index] * top / maximum))
            return _invert(dataset, out, top)
    if center is None or width is None or width < 1:
        stored = int(dataset.get("BitsStored", 8) or 8)
        if stored <= 8:  # small images print as they are: their whole range
            lowest, highest = intercept, ((1 << stored) - 1) * slope + intercept
        else:  # deep ones (CT, MR) without a window: the range they use
            lowest, highest = min(modality), max(modality)
        center, width = (lowest + highest) / 2 + 0.5, max(2.0, highest - lowest + 1)
    out = []
    bottom_edge = center - 0.5 - (width - 1) / 2
    top_edge = center - 0.5 + (width - 1) / 2
    for m in modality:
        if m <= bottom_edge:
            out.append(0)
        elif m > top_edge:
            out.append(top)
        else:
            out.append(round(((m - (center - 0.5)) / max(width - 1, 1) + 0.5) * top))
    return _invert(dataset, [min(top, max(0, v)) for v in out], top)


def _invert(dataset: Dataset, values: list[int], top: int) -> list[int]:
    if str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        return [top - v for v in values]
    return values


def prepare_image(dataset: Dataset, *, color: bool = False, bits: int = 8) -> Dataset:
    """An image as a Basic Grayscale (or Color) Image Sequence item (PS3.3 C.13.5.1, C.13.6.1).

    Grayscale: Modality LUT and the image's window (or VOI LUT) applied, MONOCHROME1
    inverted, scaled to ``bits`` (8, or 12 in 16) as MONOCHROME2. Color: RGB by plane, 8
    bits; a grayscale image becomes grey RGB, an RGB one printed in grayscale its
    luminance. Only the first frame of a multi-frame image is printed.
    """
    from pydicom import Dataset

    if bits not in (8, 12):
        raise LocalProtocolError(f"bits must be 8 or 12, not {bits}")
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if keyword not in dataset:
            raise LocalProtocolError(f"the image has no {keyword}: not an image")
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    values, samples = _pixel_values(dataset)
    count = rows * columns
    item = Dataset()
    item.Rows, item.Columns = rows, columns
    item.PixelRepresentation = 0
    aspect = dataset.get("PixelAspectRatio")
    item.PixelAspectRatio = [int(a) for a in aspect] if aspect else [1, 1]
    if samples == 3:
        if photometric != "RGB":
            raise LocalProtocolError(f"color images must be RGB, not {photometric}")
        planar = int(dataset.get("PlanarConfiguration", 0) or 0)
        if planar == 1:
            planes = [bytes(values[n * count : (n + 1) * count]) for n in range(3)]
        else:
            planes = [bytes(values[n::3][:count]) for n in range(3)]
        if not color:
            red, green, blue = planes
            grey = bytes(
                (299 * r + 587 * g + 114 * b) // 1000
                for r, g, b in zip(red, green, blue, strict=True)
            )
            return _grey_item(item, grey, bits)
    elif samples == 1:
        low, high = min(values), max(values)
        top = 255 if (color or bits == 8) else 4095
        lut = _grey_lut(dataset, low, high, top)
        mapped = [lut[v - low] for v in values]
        if not color:
            if bits == 8:
                return _grey_item(item, bytes(mapped), 8)
            out = array.array("H", mapped)
            if sys.byteorder == "big":
                out.byteswap()
            return _grey_item(item, out.tobytes(), 12)
        planes = [bytes(mapped)] * 3
    else:
        raise LocalProtocolError(f"{samples} samples per pixel is not printable")
    item.SamplesPerPixel = 3
    item.PhotometricInterpretation = "RGB"
    item.PlanarConfiguration = 1
    item.BitsAllocated, item.BitsStored, item.HighBit = 8, 8, 7
    item.PixelData = b"".join(planes)
    item["PixelData"].VR = "OB"
    return item


def _grey_item(item: Dataset, pixels: bytes, bits: int) -> Dataset:
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = "MONOCHROME2"
    if bits == 8:
        item.BitsAllocated, item.BitsStored, item.HighBit = 8, 8, 7
        item.PixelData = pixels
        item["PixelData"].VR = "OB"
    else:
        item.BitsAllocated, item.BitsStored, item.HighBit = 16, 12, 11
        item.PixelData = pixels
        item["PixelData"].VR = "OW"
    return item


# --------------------------------------------------------------------------- the job


def event_recorder(events: list[PrinterEvent]) -> Callable[[Request], Awaitable[int]]:
    """A handler for the printer's N-EVENT-REPORT that records each event (answer 0000)."""

    async def on_event(request: Request) -> int:
        primitive: Any = request.primitive
        status = PRINTER_STATUS_EVENT.get(primitive.event_type_id)
        if status is None:
            log.warning("printer event type %s is unknown", primitive.event_type_id)
            return 0x0113  # no such event type (PS3.7 C.5)
        info = None
        try:
            dataset = request.decode()
        except DicomWireError:
            dataset = None
        if dataset is not None and dataset.get("PrinterStatusInfo"):
            info = str(dataset.PrinterStatusInfo)
        events.append(PrinterEvent(status, info, primitive.event_type_id))
        log.warning("printer reports %s%s", status, f" ({info})" if info else "")
        return 0

    return on_event


class PrintJob:
    """The print steps on an established association (see the module docstring).

    Each step raises :class:`~dicomwire.errors.DimseStatusError` on a failure status (or
    a warning the options do not accept) and records the warnings it went on after.
    """

    def __init__(self, client: Client, options: PrintOptions | None = None) -> None:
        self.client = client
        self.options = options or PrintOptions()
        self.session_uid: str | None = None
        self.warnings: list[tuple[str, Status]] = []
        self.layout = parse_display_format(self.options.display_format)

    @property
    def meta(self) -> str:
        return self.options.meta_sop_class

    def _check(self, result: NResult, what: str, *, printing: bool = False) -> Status:
        status = result.status
        if status.category is Category.SUCCESS:
            return status
        meaning = status.meaning_for(ServiceClass.PRINT)
        if status.category is Category.WARNING and (
            (printing and status in PRINT_WARNINGS) or int(status) in self.options.accept_warnings
        ):
            log.warning("%s: warning %s", what, f"0x{int(status):04X} ({meaning})")
            self.warnings.append((what, status))
            return status
        comment = result.error_comment or meaning
        if status.category is Category.WARNING:
            comment = f"warning not accepted: {meaning}"
        raise DimseStatusError(status, f"{what}: {comment}")

    async def printer_status(self) -> tuple[str, str | None]:
        """N-GET the printer: (Printer Status, Printer Status Info)."""
        result = await self.client.n_get(
            PRINTER, PRINTER_INSTANCE, [0x21100010, 0x21100020], meta_sop_class_uid=self.meta
        )
        self._check(result, "printer N-GET")
        dataset = result.dataset
        status = str(dataset.get("PrinterStatus", "")).strip().upper() if dataset else ""
        info = str(dataset.get("PrinterStatusInfo", "")) if dataset else None
        if status == "WARNING":
            log.warning("printer status WARNING (%s): printing anyway", info)
        return status or "NORMAL", info or None

    async def create_session(self) -> str:
        """N-CREATE the Film Session; its UID."""
        o = self.options
        attributes: dict[str, object] = {"NumberOfCopies": o.copies}
        for keyword, value in (
            ("PrintPriority", o.priority),
            ("MediumType", o.medium),
            ("FilmDestination", o.destination),
            ("FilmSessionLabel", o.session_label),
        ):
            if value is not None:
                attributes[keyword] = value
        result = await self.client.n_create(
            BASIC_FILM_SESSION, attributes, meta_sop_class_uid=self.meta
        )
        self._check(result, "film session N-CREATE")
        if not result.affected_sop_instance_uid:
            raise DimseStatusError(0xC000, "the film session N-CREATE-RSP has no instance UID")
        self.session_uid = result.affected_sop_instance_uid
        return self.session_uid

    async def create_film_box(self) -> tuple[str, list[str]]:
        """N-CREATE a Film Box: its UID and its image boxes' UIDs, in position order."""
        from pydicom import Dataset

        if self.session_uid is None:
            raise LocalProtocolError("create the film session first")
        o = self.options
        box = Dataset()
        box.ImageDisplayFormat = o.display_format
        reference = Dataset()
        reference.ReferencedSOPClassUID = BASIC_FILM_SESSION
        reference.ReferencedSOPInstanceUID = self.session_uid
        box.ReferencedFilmSessionSequence = [reference]
        for keyword, value in (
            ("FilmOrientation", o.orientation),
            ("FilmSizeID", o.film_size),
            ("MagnificationType", o.magnification),
            ("SmoothingType", o.smoothing),
            ("BorderDensity", o.border_density),
            ("EmptyImageDensity", o.empty_density),
            ("MinDensity", o.min_density),
            ("MaxDensity", o.max_density),
            ("Trim", o.trim),
            ("ConfigurationInformation", o.configuration),
        ):
            if value is not None:
                setattr(box, keyword, value)
        result = await self.client.n_create(BASIC_FILM_BOX, box, meta_sop_class_uid=self.meta)
        self._check(result, "film box N-CREATE")
        uid = result.affected_sop_instance_uid
        answer = result.dataset
        references = answer.get("ReferencedImageBoxSequence") if answer is not None else None
        if not uid or not references:
            raise DimseStatusError(
                0xC000, "the film box N-CREATE-RSP lacks its UID or Referenced Image Box Sequence"
            )
        boxes = [str(item.ReferencedSOPInstanceUID) for item in references]
        if len(boxes) != self.layout.count:
            log.warning(
                "the printer made %d image boxes for %s (%d positions)",
                len(boxes),
                self.options.display_format,
                self.layout.count,
            )
        return uid, boxes

    async def set_image_box(self, uid: str, position: int, item: Dataset) -> Status:
        """N-SET one Image Box with an image sequence item (from :func:`prepare_image`)."""
        from pydicom import Dataset

        box = Dataset()
        box.ImageBoxPosition = position
        if self.options.polarity is not None:
            box.Polarity = self.options.polarity
        keyword = "BasicColorImageSequence" if self.options.color else "BasicGrayscaleImageSequence"
        setattr(box, keyword, [item])
        result = await self.client.n_set(
            self.options.image_box_class, uid, box, meta_sop_class_uid=self.meta
        )
        return self._check(result, f"image box {position} N-SET")

    async def print_film_box(self, uid: str) -> Status:
        """N-ACTION print on a Film Box; the status (print warnings included)."""
        result = await self.client.n_action(
            BASIC_FILM_BOX, uid, ACTION_PRINT, meta_sop_class_uid=self.meta
        )
        return self._check(result, "film box N-ACTION print", printing=True)

    async def print_session(self) -> Status:
        """N-ACTION print on the Film Session (every film box in it)."""
        if self.session_uid is None:
            raise LocalProtocolError("create the film session first")
        result = await self.client.n_action(
            BASIC_FILM_SESSION, self.session_uid, ACTION_PRINT, meta_sop_class_uid=self.meta
        )
        return self._check(result, "film session N-ACTION print", printing=True)

    async def delete_session(self) -> Status:
        """N-DELETE the Film Session (and with it its film and image boxes)."""
        if self.session_uid is None:
            raise LocalProtocolError("no film session to delete")
        result = await self.client.n_delete(
            BASIC_FILM_SESSION, self.session_uid, meta_sop_class_uid=self.meta
        )
        status = self._check(result, "film session N-DELETE")
        self.session_uid = None
        return status

    async def print_film(self, items: Sequence[Dataset], film: FilmResult) -> None:
        """One film: N-CREATE the film box, N-SET its image boxes, N-ACTION print."""
        film.film_box_uid, boxes = await self.create_film_box()
        if len(boxes) < len(items):  # fo-dicom#1294: never drop an image silently
            raise DimseStatusError(
                0xC000,
                f"the printer made {len(boxes)} image boxes for {len(items)} images",
            )
        for position, (uid, item) in enumerate(zip(boxes, items, strict=False), 1):
            status = await self.set_image_box(uid, position, item)
            if not status.is_success:
                film.warnings.append(status)
        film.status = await self.print_film_box(film.film_box_uid)
        if not film.status.is_success:
            film.warnings.append(film.status)


def _load(image: str | Path | Dataset) -> tuple[str, Dataset]:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    if isinstance(image, str | Path):
        try:
            return Path(image).name, dcmread(image)
        except (OSError, InvalidDicomError) as exc:
            raise LocalProtocolError(f"{image}: cannot read a DICOM image: {exc}") from None
    return str(image.get("SOPInstanceUID", "dataset")), image


async def print_images(
    host: str,
    port: int,
    images: Iterable[str | Path | Dataset],
    *,
    options: PrintOptions | None = None,
    called_ae: str = "ANY-SCP",
    calling_ae: str = "DICOMWIRE",
    timeouts: Timeouts | None = None,
    tls: TLSConfig | None = None,
    on_event: Callable[[PrinterEvent], None] | None = None,
) -> PrintResult:
    """Print ``images`` (files or Datasets) on the printer at ``host``:``port``.

    As many film boxes as the display format needs; each film's outcome is in the
    result, whose ``ok`` is True only when every film printed. Images that cannot be
    read or converted raise :class:`~dicomwire.errors.LocalProtocolError` before the
    association is opened; everything that happens on the wire is in the result.
    """
    from ..client import connect

    options = options or PrintOptions()
    layout = parse_display_format(options.display_format)
    loaded = [_load(image) for image in images]
    if not loaded:
        raise LocalProtocolError("no image to print")
    items = [
        prepare_image(dataset, color=options.color, bits=8 if options.color else options.bits)
        for _name, dataset in loaded
    ]
    names = [name for name, _dataset in loaded]
    per_film = layout.count
    result = PrintResult()
    for start in range(0, len(items), per_film):
        result.films.append(FilmResult(start // per_film + 1, names[start : start + per_film]))
    events: list[PrinterEvent] = result.events
    recorder = event_recorder(events)

    async def on_report(request: Request) -> int:
        answer = await recorder(request)
        if on_event is not None and events:
            on_event(events[-1])
        return answer

    handlers: dict[int | tuple[str, int], Handler] = {
        (PRINTER, CommandField.N_EVENT_REPORT_RQ): on_report
    }
    film: FilmResult | None = None
    try:
        async with connect(
            host,
            port,
            called_ae=called_ae,
            calling_ae=calling_ae,
            services=[options.meta_sop_class],
            handlers=handlers,
            timeouts=timeouts,
            tls=tls,
        ) as client:
            job = PrintJob(client, options)
            try:
                result.printer_status, result.printer_status_info = await job.printer_status()
                if result.printer_status == "FAILURE":
                    info = result.printer_status_info or "no status info"
                    result.reason = f"printer status FAILURE ({info}): nothing printed"
                    log.warning("print job failed: %s", result.reason)
                    return result
                result.session_uid = await job.create_session()
                for film in result.films:
                    start = (film.number - 1) * per_film
                    await job.print_film(items[start : start + per_film], film)
                film = None
            finally:
                result.warnings = job.warnings
                if job.session_uid is not None and client.session.association.is_established:
                    try:
                        await job.delete_session()
                    except DicomWireError as exc:
                        log.warning("film session N-DELETE failed: %s", exc)
        result.ok = all(f.printed for f in result.films)
        if not result.ok and result.reason is None:
            result.reason = "not every film was printed"
    except DicomWireError as exc:
        result.reason = str(exc)
        if film is not None:
            film.error = str(exc)
        log.warning("print job failed: %s", exc)
    return result

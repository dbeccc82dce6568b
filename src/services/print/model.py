"""The print management vocabulary both sides share: PS3.4 Annex H SOP classes, and the
film box attributes of PS3.3 C.13.3 (Image Display Format, Film Size ID, densities).

The Basic Grayscale and Basic Color Print Management Meta SOP Classes (PS3.4 H.3) are what
an association negotiates; each DIMSE-N request names the SOP class it acts on (Film
Session, Film Box, Image Box, Printer) in its Affected/Requested SOP Class UID.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ValidationError

__all__ = [
    "ACTION_PRINT",
    "BASIC_COLOR_IMAGE_BOX",
    "BASIC_COLOR_PRINT_META",
    "BASIC_FILM_BOX",
    "BASIC_FILM_SESSION",
    "BASIC_GRAYSCALE_IMAGE_BOX",
    "BASIC_GRAYSCALE_PRINT_META",
    "FILM_SIZES",
    "IMAGE_BOX_OF_META",
    "Layout",
    "META_MEMBERS",
    "PRINTER",
    "PRINTER_EVENT_TYPES",
    "PRINTER_INSTANCE",
    "PRINTER_STATUS_EVENT",
    "film_size_inches",
    "parse_density",
    "parse_display_format",
]

#: PS3.4 H.3.1 and H.3.2: the Meta SOP Classes an association negotiates.
BASIC_GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
BASIC_COLOR_PRINT_META = "1.2.840.10008.5.1.1.18"
#: PS3.4 H.4: the SOP classes the DIMSE-N requests name.
BASIC_FILM_SESSION = "1.2.840.10008.5.1.1.1"
BASIC_FILM_BOX = "1.2.840.10008.5.1.1.2"
BASIC_GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
BASIC_COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
#: PS3.4 H.4.8.1: the Printer SOP Class's well-known instance.
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"

#: The SOP classes each Meta SOP Class is made of (PS3.4 Tables H.3-1 and H.3-2).
META_MEMBERS: dict[str, frozenset[str]] = {
    BASIC_GRAYSCALE_PRINT_META: frozenset(
        (BASIC_FILM_SESSION, BASIC_FILM_BOX, BASIC_GRAYSCALE_IMAGE_BOX, PRINTER)
    ),
    BASIC_COLOR_PRINT_META: frozenset(
        (BASIC_FILM_SESSION, BASIC_FILM_BOX, BASIC_COLOR_IMAGE_BOX, PRINTER)
    ),
}
#: The image box class a film box creates under each Meta SOP Class.
IMAGE_BOX_OF_META: dict[str, str] = {
    BASIC_GRAYSCALE_PRINT_META: BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_COLOR_PRINT_META: BASIC_COLOR_IMAGE_BOX,
}

#: N-ACTION Action Type ID 1: print (Film Session PS3.4 H.4.1.2.4, Film Box H.4.2.2.4).
ACTION_PRINT = 1
#: Printer N-EVENT-REPORT Event Type IDs (PS3.4 Table H.4-29 / H.4.8.1.1) by status.
PRINTER_EVENT_TYPES: dict[str, int] = {"NORMAL": 1, "WARNING": 2, "FAILURE": 3}
PRINTER_STATUS_EVENT = {value: key for key, value in PRINTER_EVENT_TYPES.items()}

#: Film Size ID (2010,0050) defined terms (PS3.3 C.13.3) as (width, height) in inches.
FILM_SIZES: dict[str, tuple[float, float]] = {
    "8INX10IN": (8.0, 10.0),
    "8_5INX11IN": (8.5, 11.0),
    "10INX12IN": (10.0, 12.0),
    "10INX14IN": (10.0, 14.0),
    "11INX14IN": (11.0, 14.0),
    "11INX17IN": (11.0, 17.0),
    "14INX14IN": (14.0, 14.0),
    "14INX17IN": (14.0, 17.0),
    "24CMX24CM": (24 / 2.54, 24 / 2.54),
    "24CMX30CM": (24 / 2.54, 30 / 2.54),
    "A4": (210 / 25.4, 297 / 25.4),
    "A3": (297 / 25.4, 420 / 25.4),
}


def film_size_inches(film_size_id: str, orientation: str = "PORTRAIT") -> tuple[float, float]:
    """(width, height) of the film in inches; LANDSCAPE turns it (PS3.3 C.13.3)."""
    try:
        width, height = FILM_SIZES[film_size_id.strip().upper()]
    except KeyError:
        raise ValidationError(
            f"film size {film_size_id!r} is not one of {', '.join(FILM_SIZES)}"
        ) from None
    if orientation.strip().upper() == "LANDSCAPE":
        return height, width
    return width, height


@dataclass(frozen=True, slots=True)
class Layout:
    """An Image Display Format (2010,0010) as a grid: images per row (or per column).

    ``STANDARD\\C,R`` is R rows of C images; ``ROW\\a,b,...`` rows of a, b... images;
    ``COL\\a,b,...`` columns of a, b... images. Image Box Position 1 is the top left image,
    numbered left to right, then top to bottom (for COL: top to bottom, then left to
    right).
    """

    kind: str
    counts: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many image boxes a film box of this format has."""
        return sum(self.counts)

    @property
    def text(self) -> str:
        if self.kind == "STANDARD":
            return f"STANDARD\\{self.counts[0]},{len(self.counts)}"
        return f"{self.kind}\\" + ",".join(str(c) for c in self.counts)

    def cells(self, width: float, height: float) -> list[tuple[float, float, float, float]]:
        """Each image position's (left, top, width, height) on a film of this size."""
        boxes: list[tuple[float, float, float, float]] = []
        lines = len(self.counts)
        if self.kind == "COL":
            column_width = width / lines
            for column, count in enumerate(self.counts):
                for row in range(count):
                    boxes.append(
                        (column * column_width, row * height / count, column_width, height / count)
                    )
            return boxes
        row_height = height / lines
        for row, count in enumerate(self.counts):
            for column in range(count):
                boxes.append((column * width / count, row * row_height, width / count, row_height))
        return boxes


#: Limits keeping a film box's image box count sane (a 20x20 grid is already a contact sheet).
MAX_LINE = 64


def parse_display_format(text: str) -> Layout:
    """Parse an Image Display Format (PS3.3 C.13.3): ``STANDARD\\C,R``, ``ROW\\..``, ``COL\\..``.

    Raises :class:`ValidationError` (the SCP answers 0106) for anything else.
    """
    kind, separator, rest = str(text).strip().partition("\\")
    kind = kind.strip().upper()
    if not separator or kind not in ("STANDARD", "ROW", "COL"):
        raise ValidationError(
            f"image display format {text!r}: expected STANDARD\\C,R, ROW\\a,b... or COL\\a,b..."
        )
    try:
        numbers = tuple(int(part) for part in rest.split(","))
    except ValueError:
        raise ValidationError(f"image display format {text!r}: not whole numbers") from None
    if any(not 1 <= n <= MAX_LINE for n in numbers):
        raise ValidationError(f"image display format {text!r}: counts must be 1..{MAX_LINE}")
    if kind == "STANDARD":
        if len(numbers) != 2:
            raise ValidationError(f"image display format {text!r}: STANDARD needs C,R")
        columns, rows = numbers
        return Layout("STANDARD", (columns,) * rows)
    if len(numbers) > MAX_LINE:
        raise ValidationError(f"image display format {text!r}: too many {kind.lower()}s")
    return Layout(kind, numbers)


def parse_density(value: object, default: int) -> int | str:
    """Border/Empty Image Density (2010,0100 / 0110): BLACK, WHITE or hundredths of OD."""
    if value is None or str(value).strip() == "":
        return default
    text = str(value).strip().upper()
    if text in ("BLACK", "WHITE"):
        return text
    try:
        number = int(text)
    except ValueError:
        raise ValidationError(f"density {value!r}: BLACK, WHITE or hundredths of OD") from None
    if number < 0:
        raise ValidationError(f"density {value!r} is negative")
    return number

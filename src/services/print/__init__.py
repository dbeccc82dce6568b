"""Print Management (PS3.4 Annex H): the virtual film printer SCP and the print SCU.

- :class:`Print` (:mod:`.service`) — the node service: Printer, Film Session, Film Box and
  Image Box SOP classes under both Basic Print Management Meta SOP Classes, each printed
  film rendered as a PNG with a JSON sidecar (:mod:`.scp`, :mod:`.render`);
- :func:`print_images` and :class:`PrintJob` (:mod:`.scu`) — the SCU a modality drives:
  printer status, film session, film boxes, image boxes, print, delete;
- :mod:`.model` — the SOP classes and film box vocabulary both share.
"""

from __future__ import annotations

from .model import (
    BASIC_COLOR_IMAGE_BOX,
    BASIC_COLOR_PRINT_META,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    PRINTER,
    PRINTER_INSTANCE,
    Layout,
    parse_display_format,
)
from .scp import PrintConfig, PrintedFilm, PrintSCP
from .scu import (
    FilmResult,
    PrinterEvent,
    PrintJob,
    PrintOptions,
    PrintResult,
    prepare_image,
    print_images,
)
from .service import Print

__all__ = [
    "BASIC_COLOR_IMAGE_BOX",
    "BASIC_COLOR_PRINT_META",
    "BASIC_FILM_BOX",
    "BASIC_FILM_SESSION",
    "BASIC_GRAYSCALE_IMAGE_BOX",
    "BASIC_GRAYSCALE_PRINT_META",
    "PRINTER",
    "PRINTER_INSTANCE",
    "FilmResult",
    "Layout",
    "Print",
    "PrintConfig",
    "PrintJob",
    "PrintOptions",
    "PrintResult",
    "PrintSCP",
    "PrintedFilm",
    "PrinterEvent",
    "parse_display_format",
    "prepare_image",
    "print_images",
]

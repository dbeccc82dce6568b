"""Print Management against pynetdicom as the SCU (PS3.4 Annex H): a Basic Color print
job, and a printer status N-EVENT-REPORT sent by dicomwire's virtual printer in the
middle of a job, received by pynetdicom on the same association (the SCU role question of
pynetdicom#469)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.uid import generate_uid

from dicomwire.services.print import (
    BASIC_COLOR_IMAGE_BOX,
    BASIC_COLOR_PRINT_META,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    PRINTER,
    PRINTER_INSTANCE,
    prepare_image,
)

from ..conftest import import_or_fail
from ..services.test_print_helpers import LOCALHOST, PRINTER_AE, flat, image, printer_thread

pytestmark = pytest.mark.interop


def _associate(port: int, meta: str, handlers: list[Any] | None = None) -> Any:
    pynetdicom = import_or_fail("pynetdicom")
    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(meta)
    assoc = ae.associate(LOCALHOST, port, ae_title=PRINTER_AE, evt_handlers=handlers or [])
    assert assoc.is_established
    return assoc


def _film_session_and_box(assoc: Any, meta: str, display_format: str) -> tuple[str, list[str]]:
    status, printer = assoc.send_n_get(
        [0x21100010, 0x21100020], PRINTER, PRINTER_INSTANCE, meta_uid=meta
    )
    assert status.Status == 0 and printer.PrinterStatus == "NORMAL"
    session = Dataset()
    session.NumberOfCopies = 1
    session.MediumType = "PAPER"
    session_uid = generate_uid()  # the SCU names its instances here (PS3.7 10.1.5)
    status, _ = assoc.send_n_create(session, BASIC_FILM_SESSION, session_uid, meta_uid=meta)
    assert status.Status == 0
    box = Dataset()
    box.ImageDisplayFormat = display_format
    box.FilmSizeID = "8INX10IN"
    reference = Dataset()
    reference.ReferencedSOPClassUID = BASIC_FILM_SESSION
    reference.ReferencedSOPInstanceUID = session_uid
    box.ReferencedFilmSessionSequence = [reference]
    film_box_uid = generate_uid()
    status, answer = assoc.send_n_create(box, BASIC_FILM_BOX, film_box_uid, meta_uid=meta)
    assert status.Status == 0, status
    assert answer is not None  # the N-CREATE-RSP carries the film box (fo-dicom#852)
    image_boxes = [str(item.ReferencedSOPInstanceUID) for item in answer.ReferencedImageBoxSequence]
    return film_box_uid, [session_uid, *image_boxes]


def test_pynetdicom_color_print_renders_its_colors(tmp_path: Path) -> None:
    # a 2 x 2 RGB image by pixel: red, green / blue, white
    rgb = image(
        b"\xff\x00\x00\x00\xff\x00\x00\x00\xff\xff\xff\xff", 2, 2, samples=3, photometric="RGB"
    )
    item = prepare_image(rgb, color=True)
    with printer_thread(tmp_path) as printer:
        assoc = _associate(printer.port, BASIC_COLOR_PRINT_META)
        try:
            film_box, (session, first, _second) = _film_session_and_box(
                assoc, BASIC_COLOR_PRINT_META, "STANDARD\\2,1"
            )
            box = Dataset()
            box.ImageBoxPosition = 1
            box.MagnificationType = "REPLICATE"
            box.BasicColorImageSequence = [item]
            status, _ = assoc.send_n_set(
                box, BASIC_COLOR_IMAGE_BOX, first, meta_uid=BASIC_COLOR_PRINT_META
            )
            assert status.Status == 0
            status, _ = assoc.send_n_action(
                None, 1, BASIC_FILM_BOX, film_box, meta_uid=BASIC_COLOR_PRINT_META
            )
            assert status.Status == 0xB603 or status.Status == 0, status  # one box empty
            status = assoc.send_n_delete(
                BASIC_FILM_SESSION, session, meta_uid=BASIC_COLOR_PRINT_META
            )
            assert status.Status == 0
        finally:
            assoc.release()
        assert printer.service is not None
        printed = list(printer.service.scp.printed)
    assert len(printed) == 1 and printed[0].calling_ae == "PYNETDICOM"
    job = json.loads(printed[0].sidecar.read_text())
    assert [b["sop_class"] for b in job["image_boxes"]] == [BASIC_COLOR_IMAGE_BOX] * 2
    film = Image.open(printed[0].png)
    assert film.mode == "RGB"
    x, y, w, h = job["image_boxes"][0]["cell"]
    side = min(w, h)
    left, top = x + (w - side) // 2, y + (h - side) // 2
    quarter = side // 4
    assert film.getpixel((left + quarter, top + quarter)) == (255, 0, 0)
    assert film.getpixel((left + 3 * quarter, top + quarter)) == (0, 255, 0)
    assert film.getpixel((left + quarter, top + 3 * quarter)) == (0, 0, 255)
    assert film.getpixel((left + 3 * quarter, top + 3 * quarter)) == (255, 255, 255)


def test_printer_event_report_mid_job_reaches_a_pynetdicom_scu(tmp_path: Path) -> None:
    pynetdicom = import_or_fail("pynetdicom")
    received: list[tuple[int, str | None]] = []
    arrived = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        info = event.event_information
        received.append((event.request.EventTypeID, info.get("PrinterStatusInfo")))
        arrived.set()
        return 0x0000, None

    meta = BASIC_GRAYSCALE_PRINT_META
    with printer_thread(tmp_path) as printer:
        assoc = _associate(printer.port, meta, [(pynetdicom.evt.EVT_N_EVENT_REPORT, on_report)])
        try:
            film_box, (session, first) = _film_session_and_box(assoc, meta, "STANDARD\\1,1")
            assert printer.service is not None
            # the printer runs low on film between the film box and its image
            acknowledged = printer.run(printer.service.set_printer_status("WARNING", "SUPPLY LOW"))
            assert acknowledged == 1
            assert arrived.wait(10)
            box = Dataset()
            box.ImageBoxPosition = 1
            box.BasicGrayscaleImageSequence = [prepare_image(flat(200))]
            status, _ = assoc.send_n_set(box, BASIC_GRAYSCALE_IMAGE_BOX, first, meta_uid=meta)
            assert status.Status == 0
            status, printer_now = assoc.send_n_get(
                [0x21100010], PRINTER, PRINTER_INSTANCE, meta_uid=meta
            )
            assert printer_now.PrinterStatus == "WARNING"
            status, _ = assoc.send_n_action(None, 1, BASIC_FILM_BOX, film_box, meta_uid=meta)
            assert status.Status == 0
            assert printer.run(printer.service.set_printer_status("NORMAL")) == 1
            assert assoc.send_n_delete(BASIC_FILM_SESSION, session, meta_uid=meta).Status == 0
        finally:
            assoc.release()
        printed = list(printer.service.scp.printed)
    assert received[0] == (2, "SUPPLY LOW")
    assert received[1][0] == 1  # back to NORMAL
    assert len(printed) == 1

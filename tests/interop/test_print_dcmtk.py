"""Print Management against DCMTK (PS3.4 Annex H): DCMTK's print spooler ``dcmprscu``
printing stored print objects made by ``dcmpsprt`` on dicomwire's virtual printer (the
PNG read back), and dicomwire's print SCU printing on DCMTK's ``dcmprscp`` (the hardcopy
images it stores compared with what was sent)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicomwire.services.print import PrintOptions, prepare_image, print_images

from ..services.test_print_helpers import PRINTER_AE, TIMEOUTS, printer_thread
from ._dcmtk import LOCALHOST, background, dcmtk, free_tcp_port, run

pytestmark = pytest.mark.interop

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")


def dcmpstat_config(directory: Path, our_port: int, dcmprscp_port: int) -> Path:
    """A dcmpstat.cfg of our own: writable folders, our printer, and dcmprscp's."""
    for name in ("log", "spool", "database", "lut", "reports"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    config = directory / "dcmpstat.cfg"
    config.write_text(
        f"""[[GENERAL]]
[APPLICATION]
LogDirectory = {directory / "log"}
LogFile = dcmpstat.log
LogLevel = INFO
[PRINT]
Directory = {directory / "spool"}
[DATABASE]
Directory = {directory / "database"}
[LUT]
Directory = {directory / "lut"}
[REPORT]
Directory = {directory / "reports"}
[NETWORK]
Aetitle = DCMPSTAT
[[COMMUNICATION]]
[OURPRINTER]
Aetitle = {PRINTER_AE}
Description = dicomwire virtual printer
Hostname = {LOCALHOST}
Port = {our_port}
Type = PRINTER
ImplicitOnly = false
DisableNewVRs = false
MaxPDU = 32768
DisplayFormat = 1,1\\2,2
FilmSizeID = 14INX17IN\\8INX10IN
MediumType = PAPER\\BLUE FILM
MagnificationType = REPLICATE\\BILINEAR
EmptyImageDensity = BLACK\\WHITE
Supports12Bit = true
SupportsPresentationLUT = false
[DCMPRSCP]
Aetitle = DCMPRSCP
Description = DCMTK print SCP
Hostname = {LOCALHOST}
Port = {dcmprscp_port}
Type = LOCALPRINTER
ImplicitOnly = false
DisableNewVRs = false
MaxPDU = 32768
DisplayFormat = 1,1\\2,1\\2,2\\3,3
FilmSizeID = 8INX10IN\\14INX17IN
MediumType = PAPER\\BLUE FILM
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MinDensity = 20
Supports12Bit = true
SupportsPresentationLUT = false
SupportsTrim = true
BorderDensity = BLACK\\WHITE
EmptyImageDensity = BLACK\\WHITE
FilmDestination = MAGAZINE\\PROCESSOR
"""
    )
    return config


def test_dcmprscu_prints_stored_print_objects_on_the_virtual_printer(tmp_path: Path) -> None:
    dcmpsprt, dcmprscu = dcmtk("dcmpsprt"), dcmtk("dcmprscu")
    spool = tmp_path / "films"
    with printer_thread(spool) as printer:
        config = dcmpstat_config(tmp_path / "dcmtk", printer.port, free_tcp_port())
        made = run(
            [
                dcmpsprt,
                "-c",
                str(config),
                "-p",
                "OURPRINTER",
                "--layout",
                "2",
                "2",
                "--empty-image",
                "WHITE",
                "--filmsize",
                "8INX10IN",
                str(CT),
                str(MR),
            ]
        )
        assert made.returncode == 0, made.stdout + made.stderr
        stored = sorted((tmp_path / "dcmtk" / "database").glob("SP_*.dcm"))
        assert len(stored) == 1, made.stdout + made.stderr
        hardcopies = sorted(
            (dcmread(p) for p in (tmp_path / "dcmtk" / "database").glob("HG_*.dcm")),
            key=lambda d: -d.Rows,
        )
        done = run([dcmprscu, "-c", str(config), "-p", "OURPRINTER", "-v", str(stored[0])])
        assert done.returncode == 0, done.stdout + done.stderr
        assert printer.service is not None
        printed = list(printer.service.scp.printed)
    assert len(printed) == 1
    film = printed[0]
    assert (film.images, film.positions, film.calling_ae) == (2, 4, "DCMPSTAT")
    job = json.loads(film.sidecar.read_text())
    assert job["film_box"]["ImageDisplayFormat"] == "STANDARD\\2,2"
    assert job["film_box"]["FilmSizeID"] == "8INX10IN"
    boxes = job["image_boxes"]
    assert [(b.get("Rows"), b.get("Columns")) for b in boxes] == [
        (128, 128),
        (64, 64),
        (None, None),
        (None, None),
    ]
    # what the printer kept is what dcmpsprt rendered: the hardcopies, pixel for pixel
    kept = [dcmread(film.png.parent / name) for name in job["objects"]]
    assert [bytes(k.PixelData) for k in kept] == [bytes(h.PixelData) for h in hardcopies]
    picture = Image.open(film.png)
    assert picture.size == (320, 400)  # 8 x 10 in at 40 px/in
    mr_x, mr_y, mr_w, mr_h = boxes[1]["cell"]
    mr = picture.crop(
        (mr_x + mr_w // 4, mr_y + mr_h // 4, mr_x + 3 * mr_w // 4, mr_y + 3 * mr_h // 4)
    )
    low, high = mr.getextrema()  # type: ignore[misc]
    assert high - low > 100  # the MR is there, not an empty box
    for empty in boxes[2:]:
        x, y, w, h = empty["cell"]
        assert picture.getpixel((x + w // 2, y + h // 2)) == 255  # empty image density WHITE


def test_print_scu_on_dcmprscp_stores_the_images_sent(tmp_path: Path) -> None:
    dcmprscp = dcmtk("dcmprscp")
    port = free_tcp_port()
    config = dcmpstat_config(tmp_path, free_tcp_port(), port)
    options = PrintOptions(display_format="STANDARD\\2,1", bits=12, film_size="8INX10IN")
    with background([dcmprscp, "-c", str(config), "-p", "DCMPRSCP"], port, tmp_path / "scp.log"):
        result = asyncio.run(
            print_images(
                LOCALHOST, port, [CT, MR], options=options, called_ae="DCMPRSCP", timeouts=TIMEOUTS
            )
        )
        color = asyncio.run(
            print_images(
                LOCALHOST,
                port,
                [CT],
                options=PrintOptions(color=True),
                called_ae="DCMPRSCP",
                timeouts=TIMEOUTS,
            )
        )
    assert result.ok, result.reason
    assert result.printer_status == "NORMAL"
    assert [f.status for f in result.films] == [0]
    hardcopies = sorted(
        (dcmread(p) for p in (tmp_path / "database").glob("HG_*.dcm")), key=lambda d: -d.Rows
    )
    sent = [prepare_image(dcmread(path), bits=12) for path in (CT, MR)]
    assert len(hardcopies) == 2
    for hardcopy, item in zip(hardcopies, sent, strict=True):
        assert (hardcopy.Rows, hardcopy.Columns, hardcopy.BitsStored) == (
            item.Rows,
            item.Columns,
            12,
        )
        assert bytes(hardcopy.PixelData) == bytes(item.PixelData)
    stored_print = [dcmread(p) for p in (tmp_path / "database").glob("SP_*.dcm")]
    assert len(stored_print) == 1
    film_box = stored_print[0][0x2130, 0x0030].value[0]
    assert film_box.ImageDisplayFormat == "STANDARD\\2,1"
    assert film_box.FilmSizeID == "8INX10IN"
    # dcmprscp is a grayscale printer: it does not accept the color meta SOP class
    assert not color.ok and "1.2.840.10008.5.1.1.18" in (color.reason or "")
    assert color.films[0].status is None

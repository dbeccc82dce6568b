"""Print Management end to end: dicomwire's print SCU against dicomwire's virtual printer,
with the rendered PNGs read back (grid, positions, densities, inversion), the state rules
and bad input answered with the PS3.4 H / PS3.7 C statuses, printer status handling,
N-EVENT-REPORT during a job, and a timeout failing the job."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file

from dicomwire import connect
from dicomwire.dimse.commands import CommandField
from dicomwire.errors import LocalProtocolError, ValidationError
from dicomwire.services.print import (
    BASIC_COLOR_IMAGE_BOX,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_IMAGE_BOX,
    BASIC_GRAYSCALE_PRINT_META,
    PRINTER,
    PrinterEvent,
    PrintOptions,
    parse_display_format,
    prepare_image,
    print_images,
)
from dicomwire.services.print.scu import PrintJob
from dicomwire.services.service import CustomService
from dicomwire.ul.association import Timeouts

from ..conftest import run_bounded
from .test_print_helpers import (
    LOCALHOST,
    PRINTER_AE,
    TIMEOUTS,
    flat,
    halves,
    image,
    printer_config,
    printer_node,
    printer_thread,
)

CT = get_testdata_file("CT_small.dcm")


def grey(picture: Image.Image, x: float, y: float) -> int:
    value = picture.getpixel((round(x), round(y)))
    assert isinstance(value, int)
    return value


def cells(sidecar: Path) -> list[tuple[int, int, int, int]]:
    job = json.loads(sidecar.read_text())
    return [tuple(box["cell"]) for box in job["image_boxes"]]


# --------------------------------------------------------------------------- pure parts


def test_display_formats_give_image_box_counts_and_reject_nonsense() -> None:
    assert parse_display_format("STANDARD\\2,3").count == 6
    assert parse_display_format("standard\\1,1").text == "STANDARD\\1,1"
    assert parse_display_format("ROW\\1,2,3").count == 6
    assert parse_display_format("COL\\2,1").count == 3
    for bad in ("STANDARD\\0,1", "CUSTOM\\1", "STANDARD\\2", "STANDARD\\a,b", "ROW", ""):
        with pytest.raises(ValidationError):
            parse_display_format(bad)


def test_prepare_image_applies_rescale_window_and_monochrome1() -> None:
    # stored 0..3 with slope 100, intercept -100 -> -100, 0, 100, 200; window 50 / 200
    values = [0, 1, 2, 3]
    pixels = b"".join(v.to_bytes(2, "little") for v in values)
    source = image(
        pixels,
        2,
        2,
        bits=16,
        RescaleSlope=100,
        RescaleIntercept=-100,
        WindowCenter=50,
        WindowWidth=200,
    )
    item = prepare_image(source)
    assert item.PhotometricInterpretation == "MONOCHROME2" and item.BitsStored == 8
    out = list(item.PixelData)
    assert out[0] == 0 and out[3] == 255 and 0 < out[1] < out[2] < 255
    source.PhotometricInterpretation = "MONOCHROME1"
    inverted = list(prepare_image(source).PixelData)
    assert inverted == [255 - v for v in out]
    twelve = prepare_image(source, bits=12)
    assert (twelve.BitsAllocated, twelve.BitsStored, twelve.HighBit) == (16, 12, 11)
    words = [int.from_bytes(twelve.PixelData[i : i + 2], "little") for i in range(0, 8, 2)]
    assert words[0] == 4095 and words[3] == 0


def test_prepare_image_applies_a_voi_lut_without_a_window() -> None:
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]
    lut.LUTData = [0, 50, 100, 255]
    source = image(bytes([0, 1, 2, 3]), 2, 2, VOILUTSequence=[lut])
    assert list(prepare_image(source).PixelData) == [0, 50, 100, 255]
    source.PhotometricInterpretation = "MONOCHROME1"
    assert list(prepare_image(source).PixelData) == [255, 205, 155, 0]


def test_prepare_image_color_is_by_plane_and_grayscale_of_rgb_is_luminance() -> None:
    red = image(b"\xff\x00\x00" * 4, 2, 2, samples=3, photometric="RGB")
    item = prepare_image(red, color=True)
    assert item.PlanarConfiguration == 1
    assert item.PixelData == b"\xff" * 4 + b"\x00" * 8
    assert list(prepare_image(red).PixelData) == [76] * 4
    with pytest.raises(LocalProtocolError):
        prepare_image(Dataset())


# --------------------------------------------------------------------------- end to end


def test_printed_film_shows_grid_positions_densities_and_inversion(tmp_path: Path) -> None:
    options = PrintOptions(
        display_format="STANDARD\\2,2", empty_density="WHITE", border_density="BLACK"
    )
    images = [halves(), flat(0, photometric="MONOCHROME1"), CT, halves(), flat(128)]

    async def scenario() -> tuple[Any, Any]:
        async with printer_node(tmp_path) as (node, service):
            result = await print_images(
                LOCALHOST,
                node.port,
                images,
                options=options,
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )
            return result, list(service.scp.printed)

    result, printed = run_bounded(scenario())
    assert result.ok, result.reason
    assert [len(f.images) for f in result.films] == [4, 1]
    assert [f.status for f in result.films] == [0, 0]
    assert len(printed) == 2 and printed[0].images == 4 and printed[1].images == 1
    film = Image.open(printed[0].png)
    assert film.mode == "L" and film.size == (560, 680)  # 14 x 17 in at 40 px/in
    boxes = cells(printed[0].sidecar)
    assert len(boxes) == 4
    (x1, y1, w1, h1), (x2, _, w2, _), (x3, y3, w3, h3), (x4, y4, w4, h4) = boxes
    assert x1 < x2 and y1 < y3 and x3 == x1  # 2 columns, 2 rows, left to right then down
    assert grey(film, 0, 0) == 0  # border density BLACK
    # position 1: the square image fills the cell's width, centred: top black, bottom white
    assert grey(film, x1 + w1 / 2, y1 + h1 / 2 - w1 / 4) == 0
    assert grey(film, x1 + w1 / 2, y1 + h1 / 2 + w1 / 4) == 255
    # position 2: MONOCHROME1 zeros are white on film
    assert grey(film, x2 + w2 / 2, y1 + h1 / 2) == 255
    # position 3: the CT, windowed: not flat
    ct = film.crop((x3 + w3 // 4, y3 + h3 // 4, x3 + 3 * w3 // 4, y3 + 3 * h3 // 4))
    low, high = ct.getextrema()  # type: ignore[misc]
    assert high - low > 100
    assert grey(film, x4 + w4 / 2, y4 + h4 / 2 - w4 / 4) == 0  # image 4 is the halves again
    second = Image.open(printed[1].png)
    boxes = cells(printed[1].sidecar)
    x, y, w, h = boxes[0]
    assert grey(second, x + w / 2, y + h / 2) == 128
    x, y, w, h = boxes[3]
    assert grey(second, x + w / 2, y + h / 2) == 255  # empty image density WHITE
    job = json.loads(printed[0].sidecar.read_text())
    assert job["film_box"]["ImageDisplayFormat"] == "STANDARD\\2,2"
    assert job["film_session"]["uid"] == printed[0].png.parent.name
    assert [b["position"] for b in job["image_boxes"]] == [1, 2, 3, 4]
    # the received images are kept as Part 10 hardcopy images, pixels as sent
    assert len(job["objects"]) == 4
    kept = dcmread(printed[0].png.parent / job["objects"][0])
    assert kept.SOPClassUID == "1.2.840.10008.5.1.1.29"
    assert kept.file_meta.SourceApplicationEntityTitle == "DICOMWIRE"
    assert bytes(kept.PixelData) == bytes(prepare_image(halves()).PixelData)


def test_landscape_film_size_polarity_and_densities(tmp_path: Path) -> None:
    options = PrintOptions(
        display_format="ROW\\1,2",
        film_size="8INX10IN",
        orientation="LANDSCAPE",
        polarity="REVERSE",
        border_density="WHITE",
        empty_density="150",
        min_density=20,
        max_density=300,
    )

    async def scenario() -> Any:
        async with printer_node(tmp_path) as (node, service):
            result = await print_images(
                LOCALHOST,
                node.port,
                [flat(255), flat(0)],
                options=options,
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )
            return result, service.scp.printed[0]

    result, printed = run_bounded(scenario())
    assert result.ok, result.reason
    film = Image.open(printed.png)
    assert film.size == (400, 320)  # 10 x 8 in, turned
    top, left_bottom, right_bottom = cells(printed.sidecar)
    assert top[2] > left_bottom[2]  # one image on the first row, two on the second
    assert grey(film, 0, 0) == 255  # border WHITE
    assert grey(film, top[0] + top[2] / 2, top[1] + top[3] / 2) == 0  # 255 reversed
    assert (
        grey(film, left_bottom[0] + left_bottom[2] / 2, left_bottom[1] + left_bottom[3] / 2) == 255
    )
    # 150 of the printer's 20..300 range: a middle grey
    assert grey(film, right_bottom[0] + right_bottom[2] / 2, right_bottom[1] + 5) == round(
        255 * (300 - 150) / 280
    )


def test_color_print_renders_rgb(tmp_path: Path) -> None:
    stripes = b"\xff\x00\x00" * 32 * 16 + b"\x00\x00\xff" * 32 * 16  # red top, blue bottom
    picture = image(stripes, 32, 32, samples=3, photometric="RGB")

    async def scenario() -> Any:
        async with printer_node(tmp_path) as (node, service):
            result = await print_images(
                LOCALHOST,
                node.port,
                [picture, CT],
                options=PrintOptions(display_format="STANDARD\\2,1", color=True),
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )
            return result, service.scp.printed[0]

    result, printed = run_bounded(scenario())
    assert result.ok, result.reason
    film = Image.open(printed.png)
    assert film.mode == "RGB"
    (x, y, w, h), _ = cells(printed.sidecar)
    assert film.getpixel((x + w // 2, y + h // 2 - w // 4)) == (255, 0, 0)
    assert film.getpixel((x + w // 2, y + h // 2 + w // 4)) == (0, 0, 255)
    job = json.loads(printed.sidecar.read_text())
    assert {b["sop_class"] for b in job["image_boxes"]} == {BASIC_COLOR_IMAGE_BOX}


# --------------------------------------------------------------------------- printer status


@pytest.mark.parametrize(("status", "ok"), [("WARNING", True), ("FAILURE", False)])
def test_printer_status_warning_goes_on_failure_stops(
    tmp_path: Path, status: str, ok: bool
) -> None:
    config = printer_config(tmp_path, printer_status=status, printer_status_info="FILM JAM")

    async def scenario() -> Any:
        async with printer_node(tmp_path, config) as (node, service):
            result = await print_images(
                LOCALHOST, node.port, [flat(10)], called_ae=PRINTER_AE, timeouts=TIMEOUTS
            )
            return result, len(service.scp.printed)

    result, printed = run_bounded(scenario())
    assert result.printer_status == status and result.printer_status_info == "FILM JAM"
    assert result.ok is ok and printed == (1 if ok else 0)
    if not ok:
        assert "FAILURE" in (result.reason or "")
        assert result.session_uid is None  # nothing was created


def test_printer_event_report_during_the_job_reaches_the_scu(tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with printer_node(tmp_path) as (node, service):

            async def out_of_film(_film: Any) -> None:
                await service.set_printer_status("WARNING", "SUPPLY LOW")

            service.scp.on_printed = out_of_film
            seen: list[PrinterEvent] = []
            result = await print_images(
                LOCALHOST,
                node.port,
                [flat(1), flat(2)],
                options=PrintOptions(display_format="STANDARD\\1,1"),
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
                on_event=seen.append,
            )
            return result, seen

    result, seen = run_bounded(scenario())
    assert result.ok, result.reason  # a WARNING event is reported, the job goes on
    assert result.events == [PrinterEvent("WARNING", "SUPPLY LOW", 2)] == seen
    assert len(result.films) == 2 and all(f.printed for f in result.films)


def test_a_printer_that_does_not_answer_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    async def never(_request: Any) -> int:
        await asyncio.sleep(5)
        return 0

    silent = CustomService(
        {BASIC_GRAYSCALE_PRINT_META: {}, PRINTER: {CommandField.N_GET_RQ: never}}
    )

    async def scenario() -> Any:
        from dicomwire.services.node import Node, NodeConfig
        from dicomwire.services.storage import StorageConfig

        config = NodeConfig(
            ae_titles=[PRINTER_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=tmp_path, discard=True),
            shutdown_grace=0.5,
        )
        async with Node(config, services=[silent]) as node:
            return await print_images(
                LOCALHOST,
                node.port,
                [flat(1)],
                called_ae=PRINTER_AE,
                timeouts=Timeouts(artim=2, acse=5, dimse=0.5, network_idle=10, connect=5),
            )

    result = run_bounded(scenario())
    assert not result.ok
    assert "no response" in (result.reason or "")


# --------------------------------------------------------------------------- state rules


def test_state_rules_and_bad_input_get_their_statuses(tmp_path: Path) -> None:
    meta = BASIC_GRAYSCALE_PRINT_META

    async def scenario() -> dict[str, int]:
        seen: dict[str, int] = {}
        async with (
            printer_node(tmp_path, printer_config(tmp_path, collation=False)) as (
                node,
                _service,
            ),
            connect(
                LOCALHOST,
                node.port,
                called_ae=PRINTER_AE,
                services=["print", "verification"],
                timeouts=TIMEOUTS,
            ) as client,
        ):
            n = client
            seen["get wrong printer"] = (
                await n.n_get(PRINTER, "1.2.3", meta_sop_class_uid=meta)
            ).status
            seen["set unknown image box"] = (
                await n.n_set(
                    BASIC_GRAYSCALE_IMAGE_BOX,
                    "1.2.3.4",
                    {"ImageBoxPosition": 1},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["film box without reference"] = (
                await n.n_create(
                    BASIC_FILM_BOX,
                    {"ImageDisplayFormat": "STANDARD\\1,1"},
                    meta_sop_class_uid=meta,
                )
            ).status
            nowhere = {
                "ReferencedFilmSessionSequence": [
                    {"ReferencedSOPClassUID": BASIC_FILM_SESSION, "ReferencedSOPInstanceUID": "1.2"}
                ]
            }
            seen["film box without session"] = (
                await n.n_create(
                    BASIC_FILM_BOX,
                    {**nowhere, "ImageDisplayFormat": "STANDARD\\1,1"},
                    meta_sop_class_uid=meta,
                )
            ).status
            job = PrintJob(client, PrintOptions(display_format="STANDARD\\1,2"))
            session = await job.create_session()
            seen["second session"] = (
                await n.n_create(BASIC_FILM_SESSION, {}, meta_sop_class_uid=meta)
            ).status
            seen["session print without film box"] = (
                await n.n_action(BASIC_FILM_SESSION, session, 1, meta_sop_class_uid=meta)
            ).status
            seen["bad copies"] = (
                await n.n_set(
                    BASIC_FILM_SESSION,
                    session,
                    {"NumberOfCopies": 0},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["unsupported medium"] = (
                await n.n_set(
                    BASIC_FILM_SESSION,
                    session,
                    {"MediumType": "GOLD FOIL"},
                    meta_sop_class_uid=meta,
                )
            ).status
            reference = {
                "ReferencedFilmSessionSequence": [
                    {
                        "ReferencedSOPClassUID": BASIC_FILM_SESSION,
                        "ReferencedSOPInstanceUID": session,
                    }
                ]
            }
            seen["no display format"] = (
                await n.n_create(BASIC_FILM_BOX, reference, meta_sop_class_uid=meta)
            ).status
            seen["bad display format"] = (
                await n.n_create(
                    BASIC_FILM_BOX,
                    {**reference, "ImageDisplayFormat": "STANDARD\\0,9"},
                    meta_sop_class_uid=meta,
                )
            ).status
            dense = await n.n_create(
                BASIC_FILM_BOX,
                {**reference, "ImageDisplayFormat": "STANDARD\\1,2", "MaxDensity": 900},
                meta_sop_class_uid=meta,
            )
            seen["max density out of range"] = dense.status
            assert dense.dataset is not None
            boxes = [
                str(i.ReferencedSOPInstanceUID) for i in dense.dataset.ReferencedImageBoxSequence
            ]
            assert len(boxes) == 2
            assert dense.dataset.MaxDensity == 300
            seen["second unprinted film box"] = (
                await n.n_create(
                    BASIC_FILM_BOX,
                    {**reference, "ImageDisplayFormat": "STANDARD\\1,1"},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["color box on grayscale"] = (
                await n.n_set(
                    BASIC_COLOR_IMAGE_BOX,
                    boxes[0],
                    {"ImageBoxPosition": 1},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["no image sequence"] = (
                await n.n_set(
                    BASIC_GRAYSCALE_IMAGE_BOX,
                    boxes[0],
                    {"ImageBoxPosition": 1},
                    meta_sop_class_uid=meta,
                )
            ).status
            item = prepare_image(flat(7))
            short = copy.deepcopy(item)
            short.PixelData = b"\x00" * 10
            seen["short pixel data"] = (
                await n.n_set(
                    BASIC_GRAYSCALE_IMAGE_BOX,
                    boxes[0],
                    {"ImageBoxPosition": 1, "BasicGrayscaleImageSequence": [short]},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["wrong position"] = (
                await n.n_set(
                    BASIC_GRAYSCALE_IMAGE_BOX,
                    boxes[0],
                    {"ImageBoxPosition": 2, "BasicGrayscaleImageSequence": [item]},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["no such action"] = (
                await n.n_action(
                    BASIC_FILM_BOX,
                    dense.affected_sop_instance_uid or "",
                    7,
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["empty film box print"] = await job.print_film_box(
                dense.affected_sop_instance_uid or ""
            )
            seen["good image box"] = await job.set_image_box(boxes[0], 1, item)
            await n.n_delete(
                BASIC_FILM_BOX, dense.affected_sop_instance_uid or "", meta_sop_class_uid=meta
            )
            seen["set after delete"] = (
                await n.n_set(
                    BASIC_GRAYSCALE_IMAGE_BOX,
                    boxes[0],
                    {"ImageBoxPosition": 1, "BasicGrayscaleImageSequence": [item]},
                    meta_sop_class_uid=meta,
                )
            ).status
            seen["echo"] = await client.echo()
            await job.delete_session()
            seen["session print after delete"] = (
                await n.n_action(BASIC_FILM_SESSION, session, 1, meta_sop_class_uid=meta)
            ).status
        return seen

    seen = run_bounded(scenario())
    assert seen == {
        "get wrong printer": 0x0112,
        "set unknown image box": 0x0112,
        "film box without reference": 0x0120,
        "film box without session": 0x0106,
        "second session": 0x0110,
        "session print without film box": 0xC600,
        "bad copies": 0x0106,
        "unsupported medium": 0x0116,
        "no display format": 0x0120,
        "bad display format": 0x0106,
        "max density out of range": 0xB605,
        "second unprinted film box": 0xC616,
        "color box on grayscale": 0x0122,
        "no image sequence": 0x0120,
        "short pixel data": 0x0106,
        "wrong position": 0x0106,
        "no such action": 0x0123,
        "empty film box print": 0xB603,
        "good image box": 0x0000,
        "set after delete": 0x0112,
        "echo": 0x0000,
        "session print after delete": 0x0112,
    }


def test_create_warnings_fail_the_job_unless_accepted(tmp_path: Path) -> None:
    async def scenario(accept: frozenset[int]) -> Any:
        async with printer_node(tmp_path) as (node, _service):
            return await print_images(
                LOCALHOST,
                node.port,
                [flat(3)],
                options=PrintOptions(medium="GOLD FOIL", accept_warnings=accept),
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )

    refused = run_bounded(scenario(frozenset()))
    assert not refused.ok and "0x0116" in (refused.reason or "")
    accepted = run_bounded(scenario(frozenset({0x0116})))
    assert accepted.ok and [int(s) for _w, s in accepted.warnings] == [0x0116]


def test_color_meta_not_served_when_color_is_off(tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with printer_node(tmp_path, printer_config(tmp_path, color=False)) as (node, _s):
            return await print_images(
                LOCALHOST,
                node.port,
                [flat(3)],
                options=PrintOptions(color=True),
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )

    result = run_bounded(scenario())
    assert not result.ok and "rejected" in (result.reason or "")  # no context accepted


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomwire.services.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_reports_and_exits_by_outcome(tmp_path: Path) -> None:
    picture = tmp_path / "halves.dcm"
    halves().save_as(picture, enforce_file_format=True)
    spool = tmp_path / "spool"
    with printer_thread(spool) as printer:
        port = str(printer.port)
        done = _cli(
            "print",
            LOCALHOST,
            port,
            "-aec",
            PRINTER_AE,
            str(picture),
            str(CT),
            "--format",
            "STANDARD\\1,1",
            "--film-size",
            "8INX10IN",
            "--copies",
            "2",
        )
        assert done.returncode == 0, done.stderr
        assert "film 1: printed (0x0000): halves.dcm" in done.stdout
        assert "film 2: printed (0x0000): CT_small.dcm" in done.stdout
        assert len(list(spool.rglob("*.png"))) == 2
        not_dicom = tmp_path / "note.txt"
        not_dicom.write_text("hello")
        assert _cli("print", LOCALHOST, port, str(not_dicom)).returncode == 2
        assert _cli("print", LOCALHOST, port, str(picture), "--format", "X").returncode == 2
        gold = ("print", LOCALHOST, port, "-aec", PRINTER_AE, str(picture), "--medium", "GOLD")
        refused = _cli(*gold)
        assert refused.returncode == 1 and "0x0116" in refused.stderr
        accepted = _cli(*gold, "--accept-warnings")
        assert accepted.returncode == 0, accepted.stderr
        assert "warning: film session N-CREATE: 0x0116" in accepted.stdout
        assert printer.service is not None
        printer.run(printer.service.set_printer_status("FAILURE", "NO FILM"))
        failed = _cli("print", LOCALHOST, port, "-aec", PRINTER_AE, str(picture))
        assert failed.returncode == 1
        assert "FAILURE" in failed.stderr


def test_malformed_values_get_0106_and_a_log_line_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dicomwire.dimse.primitives import NSetRQ

    # (2020,0010) Image Box Position, explicit VR little endian, value "abc" (not an IS)
    malformed = bytes.fromhex("20201000") + b"IS" + (4).to_bytes(2, "little") + b"abc "
    garbage = b"\x01\x02\x03"

    async def scenario() -> list[int]:
        async with (
            printer_node(tmp_path) as (node, _service),
            connect(
                LOCALHOST,
                node.port,
                called_ae=PRINTER_AE,
                services=["print", "verification"],
                timeouts=TIMEOUTS,
            ) as client,
        ):
            job = PrintJob(client)
            await job.create_session()
            _film_box, boxes = await job.create_film_box()
            context = client.session.find_context(BASIC_GRAYSCALE_PRINT_META).context_id
            statuses = []
            for data in (malformed, garbage):
                operation = await client.session.send(
                    NSetRQ(BASIC_GRAYSCALE_IMAGE_BOX, boxes[0], dataset=data), context
                )
                statuses.append(int((await operation.wait()).status))
            statuses.append(int(await client.echo()))
            await job.delete_session()
            return statuses

    caplog.set_level("WARNING")
    malformed_status, garbage_status, echo_status = run_bounded(scenario())
    assert malformed_status == 0x0106
    assert garbage_status in (0x0120, 0xC000)  # nothing usable in it
    assert echo_status == 0  # the association goes on
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
    assert any(
        "ImageBoxPosition" in r.getMessage() or "abc" in r.getMessage() for r in caplog.records
    )


def test_print_section_loads_from_toml(tmp_path: Path) -> None:
    from dicomwire.errors import ConfigError
    from dicomwire.services.node import load_config
    from dicomwire.services.print import Print, PrintConfig

    path = tmp_path / "node.toml"
    path.write_text(
        '[print]\nspool = "films"\nprinter_status = "WARNING"\n'
        'medium_types = ["PAPER"]\npixels_per_inch = 60\ncollation = false\n'
    )
    config = load_config(path, {"print": Print})
    loaded = config.sections["print"]
    assert isinstance(loaded, PrintConfig)
    assert (loaded.spool, loaded.printer_status, loaded.medium_types) == (
        Path("films"),
        "WARNING",
        ["PAPER"],
    )
    assert loaded.pixels_per_inch == 60.0 and loaded.collation is False
    path.write_text('[print]\nprinter_status = "ON FIRE"\n')
    with pytest.raises(ConfigError, match="printer_status"):
        load_config(path, {"print": Print})
    assert Print(PrintConfig(), storage_root=tmp_path).scp.spool == tmp_path / "print"
    for bad in (
        PrintConfig(min_density=300, max_density=20),
        PrintConfig(pixels_per_inch=0),
        PrintConfig(film_sizes=["14INX17IN", "HUGE"]),
        PrintConfig(default_film_size="POSTCARD"),
    ):
        with pytest.raises(ConfigError):
            Print(bad)


def _scripted_printer(film_box_answer: Dataset | None) -> CustomService:
    """A printer that answers the film box N-CREATE with ``film_box_answer`` (its other
    answers plain), recording every request it gets."""
    from dicomwire.dimse.session import Request

    seen: list[tuple[str, int]] = []

    async def answer(request: Request) -> Any:
        primitive: Any = request.primitive
        seen.append((request.message.sop_class_uid or "", request.message.command_field))
        if request.message.command_field == CommandField.N_GET_RQ:
            printer = Dataset()
            printer.PrinterStatus, printer.PrinterStatusInfo = "NORMAL", "NORMAL"
            return primitive.response(0, printer)
        if request.message.command_field == CommandField.N_CREATE_RQ:
            is_box = request.message.sop_class_uid == BASIC_FILM_BOX
            dataset = film_box_answer if is_box else None
            return primitive.response(0, dataset, affected_sop_instance_uid=f"1.2.3.{len(seen)}")
        return primitive.response(0)

    handlers = {
        command: answer
        for command in (
            CommandField.N_GET_RQ,
            CommandField.N_CREATE_RQ,
            CommandField.N_SET_RQ,
            CommandField.N_ACTION_RQ,
            CommandField.N_DELETE_RQ,
        )
    }
    service = CustomService(
        {
            BASIC_GRAYSCALE_PRINT_META: {},
            PRINTER: handlers,
            BASIC_FILM_SESSION: handlers,
            BASIC_FILM_BOX: handlers,
            BASIC_GRAYSCALE_IMAGE_BOX: handlers,
        }
    )
    service.seen = seen  # type: ignore[attr-defined]
    return service


@pytest.mark.parametrize("answer", ["no data set", "one box for two images"])
def test_a_printer_that_answers_the_film_box_badly_fails_the_film(
    tmp_path: Path, answer: str
) -> None:
    """fo-dicom#852 (no N-CREATE-RSP data set) and fo-dicom#1294 (image boxes vs images)."""
    reply = None
    if answer != "no data set":
        reply = Dataset()
        box = Dataset()
        box.ReferencedSOPClassUID = BASIC_GRAYSCALE_IMAGE_BOX
        box.ReferencedSOPInstanceUID = "1.2.3.99"
        reply.ReferencedImageBoxSequence = [box]
    printer = _scripted_printer(reply)

    async def scenario() -> Any:
        from dicomwire.services.node import Node, NodeConfig
        from dicomwire.services.storage import StorageConfig

        config = NodeConfig(
            ae_titles=[PRINTER_AE],
            host=LOCALHOST,
            port=0,
            storage=StorageConfig(root=tmp_path, discard=True),
            shutdown_grace=0.5,
        )
        async with Node(config, services=[printer]) as node:
            return await print_images(
                LOCALHOST,
                node.port,
                [flat(1), flat(2)],
                options=PrintOptions(display_format="STANDARD\\2,1"),
                called_ae=PRINTER_AE,
                timeouts=TIMEOUTS,
            )

    result = run_bounded(scenario())
    assert not result.ok
    expected = "Referenced Image Box" if answer == "no data set" else "1 image boxes for 2"
    assert expected in (result.reason or "") and expected in (result.films[0].error or "")
    commands = [command for _uid, command in printer.seen]  # type: ignore[attr-defined]
    assert CommandField.N_SET_RQ not in commands  # nothing half-printed
    assert CommandField.N_ACTION_RQ not in commands
    assert commands[-1] == CommandField.N_DELETE_RQ  # the film session is still deleted


def test_printer_command_serves_and_renders(tmp_path: Path) -> None:
    from ..conftest import get_free_tcp_port, stop_process, wait_for_port

    port = get_free_tcp_port()
    spool = tmp_path / "films"
    picture = tmp_path / "flat.dcm"
    flat(90).save_as(picture, enforce_file_format=True)
    log = tmp_path / "printer.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dicomwire.services.cli",
                "printer",
                "--port",
                str(port),
                "--aet",
                "FILMER",
                "--spool",
                str(spool),
                "--status",
                "WARNING",
                "--status-info",
                "SUPPLY LOW",
                "--pixels-per-inch",
                "20",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
        done = _cli("print", LOCALHOST, str(port), "-aec", "FILMER", str(picture))
        assert done.returncode == 0, done.stderr
        assert "printer FILMER: WARNING (SUPPLY LOW)" in done.stdout
    finally:
        stop_process(process)
    films = list(spool.rglob("*.png"))
    assert len(films) == 1
    assert Image.open(films[0]).size == (280, 340)  # 14 x 17 in at 20 px/in
    assert "printed film" in log.read_text()


@pytest.mark.parametrize("collation", [True, False])
def test_film_session_print(tmp_path: Path, collation: bool) -> None:
    async def scenario() -> tuple[int, int]:
        config = printer_config(tmp_path, collation=collation)
        async with (
            printer_node(tmp_path, config) as (node, service),
            connect(
                LOCALHOST, node.port, called_ae=PRINTER_AE, services=["print"], timeouts=TIMEOUTS
            ) as client,
        ):
            job = PrintJob(client, PrintOptions(display_format="STANDARD\\1,1"))
            session = await job.create_session()
            for value in (30, 60)[: 2 if collation else 1]:
                _box, (image_box,) = await job.create_film_box()
                await job.set_image_box(image_box, 1, prepare_image(flat(value)))
            if collation:
                status = int(await job.print_session())
            else:  # B601 is no print warning the job accepts: ask without it
                answer = await client.n_action(
                    BASIC_FILM_SESSION, session, 1, meta_sop_class_uid=BASIC_GRAYSCALE_PRINT_META
                )
                status = int(answer.status)
            await job.delete_session()
            return status, len(service.scp.printed)

    status, printed = run_bounded(scenario())
    assert (status, printed) == ((0x0000, 2) if collation else (0xB601, 1))

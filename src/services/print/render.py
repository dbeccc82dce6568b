"""Rendering a printed film box as a picture: PS3.4 H.4.2 (Film Box print action) with the
film box attributes of PS3.3 C.13.3 and the image box pixels of C.13.5 / C.13.6.

The virtual printer lays the film out as a printer would: the film size's aspect ratio
turned by the orientation, the Image Display Format's grid, the Border Density around and
between the images, the Empty Image Density for positions without an image, each image
scaled to fit its position (Magnification Type: REPLICATE is nearest neighbour, BILINEAR,
CUBIC; NONE keeps the image's own size, reduced only to fit the preview), its Polarity,
and the Min/Max Density the film box asks for. Densities (hundredths of optical density) become grey
levels on the printer's density range: the maximum density is black, the minimum white.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from .model import Layout, film_size_inches

__all__ = ["FilmSpec", "PrintedImage", "RenderedFilm", "density_to_grey", "render_film"]


@dataclass(slots=True)
class PrintedImage:
    """The pixels of one image box (Basic Grayscale or Color Image Sequence item)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    pixel_data: bytes
    planar_configuration: int = 0
    polarity: str = "NORMAL"
    magnification: str | None = None


@dataclass(slots=True)
class FilmSpec:
    """What a film box says about its film (PS3.3 C.13.3)."""

    layout: Layout
    film_size: str = "14INX17IN"
    orientation: str = "PORTRAIT"
    magnification: str = "BILINEAR"
    border_density: int | str = "BLACK"
    empty_density: int | str = "BLACK"
    min_density: int | None = None
    max_density: int | None = None


@dataclass(slots=True)
class RenderedFilm:
    """The picture, and each image position's (left, top, width, height) on it."""

    image: Image.Image
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)


def density_to_grey(density: int | str, printer_min: int, printer_max: int) -> int:
    """A density as a grey level 0 (black) .. 255 (white) on the printer's range."""
    if density == "BLACK":
        return 0
    if density == "WHITE":
        return 255
    value = int(density)
    span = max(1, printer_max - printer_min)
    grey = round(255 * (printer_max - value) / span)
    return min(255, max(0, grey))


def _grey_plane(image: PrintedImage) -> Image.Image:
    """A grayscale image box's pixels as an 8-bit picture (white is the highest value)."""
    size = (image.columns, image.rows)
    count = image.rows * image.columns
    if image.bits_allocated == 8:
        picture = Image.frombytes("L", size, image.pixel_data[:count])
    else:
        values = array.array("H")
        values.frombytes(image.pixel_data[: count * 2])
        if sys.byteorder == "big":
            values.byteswap()
        top = (1 << image.bits_stored) - 1
        lut = bytes((v * 255 + top // 2) // top for v in range(top + 1))
        picture = Image.frombytes("L", size, bytes(lut[v & top] for v in values))
    if image.photometric.strip().upper() == "MONOCHROME1":
        picture = ImageOps.invert(picture)
    return picture


def _color_picture(image: PrintedImage) -> Image.Image:
    """A color image box's RGB pixels (by pixel or by plane) as a picture."""
    size = (image.columns, image.rows)
    count = image.rows * image.columns
    if image.planar_configuration == 1:
        planes = [
            Image.frombytes("L", size, image.pixel_data[n * count : (n + 1) * count])
            for n in range(3)
        ]
        return Image.merge("RGB", planes)
    return Image.frombytes("RGB", size, image.pixel_data[: count * 3])


def to_picture(image: PrintedImage) -> Image.Image:
    """An image box's pixels as a Pillow image, polarity applied."""
    picture = _color_picture(image) if image.samples_per_pixel == 3 else _grey_plane(image)
    if image.polarity.strip().upper() == "REVERSE":
        picture = ImageOps.invert(picture)
    return picture


_RESAMPLING = {
    "REPLICATE": Image.Resampling.NEAREST,
    "BILINEAR": Image.Resampling.BILINEAR,
    "CUBIC": Image.Resampling.BICUBIC,
}


def render_film(
    spec: FilmSpec,
    images: dict[int, PrintedImage],
    *,
    pixels_per_inch: float,
    printer_min_density: int,
    printer_max_density: int,
) -> RenderedFilm:
    """Lay the film out and draw each image; ``images`` by Image Box Position (1-based)."""
    width_in, height_in = film_size_inches(spec.film_size, spec.orientation)
    width = max(16, round(width_in * pixels_per_inch))
    height = max(16, round(height_in * pixels_per_inch))
    color = any(i.samples_per_pixel == 3 for i in images.values())
    mode = "RGB" if color else "L"

    def fill(grey: int) -> int | tuple[int, int, int]:
        return (grey, grey, grey) if color else grey

    border = density_to_grey(spec.border_density, printer_min_density, printer_max_density)
    empty = density_to_grey(spec.empty_density, printer_min_density, printer_max_density)
    darkest = density_to_grey(
        spec.max_density if spec.max_density is not None else "BLACK",
        printer_min_density,
        printer_max_density,
    )
    lightest = density_to_grey(
        spec.min_density if spec.min_density is not None else "WHITE",
        printer_min_density,
        printer_max_density,
    )
    film = Image.new(mode, (width, height), fill(border))
    result = RenderedFilm(film)
    gap = max(1, round(min(width, height) * 0.01))
    density_lut: list[int] | None = None
    if (darkest, lightest) != (0, 255):
        density_lut = [darkest + round(v * (lightest - darkest) / 255) for v in range(256)]
    for position, (left, top, cell_width, cell_height) in enumerate(
        spec.layout.cells(width, height), 1
    ):
        box = (
            round(left) + gap,
            round(top) + gap,
            max(1, round(cell_width) - 2 * gap),
            max(1, round(cell_height) - 2 * gap),
        )
        result.cells.append(box)
        x, y, box_width, box_height = box
        image = images.get(position)
        if image is None:
            film.paste(fill(empty), (x, y, x + box_width, y + box_height))
            continue
        picture = to_picture(image)
        if density_lut is not None:
            picture = picture.point(density_lut * (3 if picture.mode == "RGB" else 1))
        if picture.mode != mode:
            picture = picture.convert(mode)
        magnification = (image.magnification or spec.magnification or "BILINEAR").upper()
        scale = min(box_width / picture.width, box_height / picture.height)
        if magnification == "NONE":  # the image's own size, reduced only to fit the preview
            scale = min(1.0, scale)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        if size != picture.size:
            resampling = _RESAMPLING.get(magnification, Image.Resampling.BILINEAR)
            picture = picture.resize(size, resampling)
        film.paste(
            picture,
            (x + (box_width - picture.width) // 2, y + (box_height - picture.height) // 2),
        )
    return result

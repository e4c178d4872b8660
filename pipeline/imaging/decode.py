"""Decode image files into grayscale uint8 arrays, and the geometry applied before a model.

Every image that enters the project (dataset scan, preprocessing, a public upload) goes through
:func:`decode` (or :func:`read_image`, its pixels), so the rules live in one place: whatever the
file's format (PNG, JPEG, BMP, TIFF or DICOM, recognised by its content, not its name), bit depth
or colour mode, the result is a 2-D ``uint8`` array, and a file that cannot be trusted (empty,
not an image, truncated, a decompression bomb, too small to be a radiograph, a DICOM file that
is not a radiograph) raises :class:`ImageError` with a message a user can act on. DICOM is read
by :mod:`pipeline.imaging.dicom`; the
error and result types are in :mod:`pipeline.imaging.decoded`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.imaging.decoded import (
    BOMB_FIX,
    DECODE_BUDGET,
    MAX_SIDE,
    DecodeBudget,
    Decoded,
    ImageError,
    check_dimensions,
    human_bytes,
    reduction,
)

__all__ = ["DECODE_BUDGET", "MAX_SIDE", "DecodeBudget", "decode", "describe", "read_image"]

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA"}
_SUPPORTED_MODES = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"}
_SUPPORTED_MODES |= _SIXTEEN_BIT_MODES | _ALPHA_MODES

_CUT = "the file was probably cut short while downloading or copying; fetch it again"


def is_dicom(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 132 bytes or more) is DICOM: the
    ``DICM`` marker after the 128-byte preamble, whatever the file is called."""
    return head[128:132] == b"DICM"


def read_image(
    src: str | Path | bytes, *, max_pixels: int = 50_000_000, max_bytes: int | None = None
) -> np.ndarray:
    """The pixels of :func:`decode`: an H×W ``uint8`` grayscale image of any supported file."""
    return decode(src, max_pixels=max_pixels, max_bytes=max_bytes).pixels


def decode(
    src: str | Path | bytes,
    *,
    max_pixels: int = 50_000_000,
    max_bytes: int | None = None,
    for_processing: str = "refuse",
    measure_colour: bool = False,
) -> Decoded:
    """Decode a PNG / JPEG / DICOM (or BMP / TIFF) file or its bytes into a grayscale image.

    DICOM files are read by :func:`pipeline.imaging.dicom.read` (modality LUT, window, MONOCHROME1
    inverted; ``for_processing`` is its policy for raw detector images, ``"refuse"`` or
    ``"warn"``). Other files: an H×W ``uint8`` array in 0..255, upright according to the EXIF
    orientation tag. Colour images become luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B);
    transparent pixels are composited over black; 16-bit images are rescaled linearly from their
    own min..max to 0..255, because many radiographs use only 10-12 of their 16 bits and a fixed
    /257 would leave them dark (a constant 16-bit image becomes all zeros).

    ``max_pixels`` (width × height) is checked from the header before any pixel is decoded, so a
    small file that claims a huge size (a decompression bomb) costs nothing. ``max_bytes`` limits
    the file size (``None``: no limit). Raises :class:`ImageError` for a missing or empty file,
    data that is not an image, truncated or corrupt pixel data, too many pixels or bytes, and
    images smaller than 8×8.

    ``measure_colour``: also measure the file's :func:`colourfulness` from the decoded pixels
    (``Decoded.colourfulness``; DICOM files are grayscale and measure 0), so that a check for
    colour pictures needs no second decode.
    """
    source = None if isinstance(src, bytes) else str(src)
    with _open_source(src, source, max_bytes) as fp:
        if _starts_dicom(fp):
            from pipeline.imaging import (
                dicom,  # pydicom is imported when a DICOM file first arrives
            )

            return dicom.read(fp, source, max_pixels, for_processing=for_processing)
        with _open_header(fp, source, max_pixels) as im:
            if im.mode not in _SUPPORTED_MODES:
                raise ImageError(
                    source,
                    f"unsupported colour mode {im.mode!r}",
                    "re-export the image as an 8- or 16-bit grayscale or RGB PNG / JPEG",
                )
            with DECODE_BUDGET.reserve(decode_cost(im), source):
                frames = int(getattr(im, "n_frames", 1) or 1)
                _decode_pixels(im, source)
                size = im.size  # upright, before any reduction
                reduced = _reduced(im)
                return Decoded(
                    pixels=_to_gray_uint8(reduced),
                    format=str(im.format),
                    colourfulness=colourfulness(reduced) if measure_colour else 0.0,
                    size=size,
                    notes=(_first_frame_note(frames),) if frames > 1 else (),
                )


def _first_frame_note(frames: int) -> str:
    return (
        f"the file is an animation of {frames} frames: only its first frame was read; "
        "upload the radiograph as a single still image (PNG, JPEG or DICOM) to be sure"
    )


def colourfulness(im: Image.Image, max_side: int = 256) -> float:
    """Hasler & Süsstrunk's colourfulness of a decoded image (0 for any grayscale image, also
    one saved as RGB), measured at most ``max_side`` pixels a side."""
    if im.mode in ("1", "L", "LA") or im.mode in _SIXTEEN_BIT_MODES:
        return 0.0
    small = im.copy()
    small.thumbnail((max_side, max_side))
    x = np.asarray(small.convert("RGB"), dtype=np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def describe(src: str | Path | bytes) -> tuple[int, int, str]:
    """Return ``(width, height, PIL mode)`` of an image from its header, without decoding pixels.

    Width and height are as stored in the file, before any EXIF rotation (finding a PNG's EXIF
    can mean reading the whole file); the array from :func:`read_image` is upright and may be
    H×W swapped. The mode is the file's own (e.g. ``"I;16"``, ``"RGBA"``), which
    :func:`read_image` discards; for DICOM it is e.g. ``"DICOM MONOCHROME1 12-bit"``. Raises
    :class:`ImageError` when the header cannot be read.
    """
    source = None if isinstance(src, bytes) else str(src)
    # No pixel limit here: describing a bomb is harmless, decoding it is what read_image stops.
    with _open_source(src, source, None) as fp:
        if _starts_dicom(fp):
            from pipeline.imaging import dicom

            return dicom.describe(fp, source)
        with _open_header(fp, source, None) as im:
            return im.width, im.height, im.mode


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an H×W (or H×W×C) image to ``size`` × ``size`` pixels, keeping its dtype.

    The whole radiograph is kept: nothing is cropped, so a non-square image is squashed to a
    square (cropping could cut off lung apices or costophrenic angles, where TB often shows).
    Uses area interpolation, which averages pixels when shrinking and so avoids aliasing of fine
    rib and lung texture; an image smaller than ``size`` is enlarged almost like nearest
    neighbour (blocky), which is rare for radiographs and adds no false detail.
    """
    if size < 1:
        raise ValueError(f"resize: size must be a positive number of pixels, got {size}")
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _open_source(src: str | Path | bytes, source: str | None, max_bytes: int | None) -> IO[bytes]:
    """Open a path or wrap bytes after the size checks that need no decoding."""
    if isinstance(src, bytes):
        size = len(src)
    else:
        path = Path(src)
        if not path.is_file():
            problem = "is a folder, not an image file" if path.is_dir() else "file not found"
            raise ImageError(source, problem, "check the path")
        size = path.stat().st_size
    if size == 0:
        raise ImageError(source, "the file is empty (0 bytes)", "re-export or re-download it")
    if max_bytes is not None and size > max_bytes:
        raise ImageError(
            source,
            f"the file is {human_bytes(size)}, over the {human_bytes(max_bytes)} limit",
            "downscale it or save it as a compressed PNG / JPEG",
        )
    return io.BytesIO(src) if isinstance(src, bytes) else Path(src).open("rb")


def _open_header(fp: IO[bytes], source: str | None, max_pixels: int | None) -> Image.Image:
    """Parse the header only, refusing non-images, bombs and tiny images before decoding."""
    try:
        im = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(
            source,
            "cannot identify image file: this is not a PNG, JPEG, DICOM, BMP or TIFF image",
            "make sure the file really is an image (not a renamed text or HTML file) and "
            "re-export it as PNG or JPEG",
        ) from None
    except Image.DecompressionBombError as err:
        # PIL's own limit fires inside open() for sizes far beyond ours: same problem, same fix,
        # told with this app's limit rather than Pillow's.
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        many = f"{int(claimed.group(1)):,} pixels" if claimed else "far too many pixels"
        limit = f"the {max_pixels:,} pixel limit" if max_pixels else "what can be decoded safely"
        problem = f"the header claims {many}, over {limit} (a possible decompression bomb)"
        raise ImageError(source, problem, BOMB_FIX) from None
    # A file cut short inside its header ("Truncated File Read") or with a broken one fails in
    # open(), with any of the exception types of _decode_pixels.
    except Exception as err:
        problem = f"the file is truncated or corrupt before its pixel data ({err})"
        raise ImageError(source, problem, _CUT) from None
    try:
        check_dimensions(*im.size, source, max_pixels)
    except ImageError:
        im.close()
        raise
    return im


def _starts_dicom(fp: IO[bytes]) -> bool:
    """Whether the open file is DICOM (see :func:`is_dicom`); leaves it at its start."""
    head = fp.read(132)
    fp.seek(0)
    return is_dicom(head)


def _decode_pixels(im: Image.Image, source: str | None) -> None:
    """Decode all pixel data now, so that truncated or corrupt files fail here, loudly."""
    # PIL's format plugins signal bad data with many exception types (OSError, SyntaxError,
    # EOFError, struct.error...), so at this edge every one of them becomes an ImageError.
    try:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as err:
        raise ImageError(source, f"the image data is truncated or corrupt ({err})", _CUT) from None


# Decoding costs memory: the raster PIL holds (width × height × bytes per pixel) plus a reduced
# copy; see MAX_SIDE and DECODE_BUDGET in pipeline.imaging.decoded.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decode_cost(im: Image.Image) -> int:
    """Bytes of memory decoding ``im`` takes at most: PIL's raster, and an array copy of it
    (reduced to MAX_SIDE when larger)."""
    raster = im.width * im.height * _BYTES_PER_PIXEL.get(im.mode, 4)
    return raster + raster // reduction(*im.size) ** 2


def _reduced(im: Image.Image) -> Image.Image:
    """``im`` box-filtered to at most MAX_SIDE pixels a side (else itself)."""
    factor = reduction(*im.size)
    if factor == 1:
        return im
    size = (-(-im.width // factor), -(-im.height // factor))
    return im.resize(size, Image.Resampling.BOX)


def _to_gray_uint8(im: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any supported mode to an H×W uint8 array."""
    if im.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(im)
        lo, hi = wide.min(), wide.max()
        if hi == lo:
            return np.zeros(wide.shape, dtype=np.uint8)
        if wide.dtype.kind in "ui" and wide.itemsize <= 2:
            # A lookup table over the integer levels: no float copy of the whole image.
            levels = np.arange(int(lo), int(hi) + 1, dtype=np.float64)
            table = np.rint((levels - float(lo)) * (255.0 / float(hi - lo))).astype(np.uint8)
            return table[wide - lo]
        wide = wide.astype(np.float32)
        return np.rint((wide - float(lo)) * (255.0 / float(hi - lo))).astype(np.uint8)
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, im.convert("RGBA"))
    if im.mode != "L":
        im = im.convert("L")
    return np.array(im, dtype=np.uint8)

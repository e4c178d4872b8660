"""Decode image files into grayscale uint8 arrays, and the geometry applied before a model.

Every image that enters the project (dataset scan, preprocessing, a public upload) goes through
:func:`read_image`, so the rules live in one place: whatever the file's bit depth or colour mode,
the result is a 2-D ``uint8`` array, and a file that cannot be trusted (empty, not an image,
truncated, a decompression bomb, too small to be a radiograph) raises :class:`ImageError` with a
message a user can act on.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Anything smaller cannot hold a chest radiograph; it is a thumbnail, an icon or a broken export.
MIN_SIDE = 8

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA"}
_SUPPORTED_MODES = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"}
_SUPPORTED_MODES |= _SIXTEEN_BIT_MODES | _ALPHA_MODES

_BOMB_FIX = "downscale the image (a chest X-ray rarely needs more than 4096×4096 pixels)"


class ImageError(ValueError):
    """An image was refused; ``str(err)`` names the file (when known), the problem and the fix.

    ``source`` is the file path (``None`` for in-memory bytes) and ``reason`` is the message
    without the path, e.g. for listing bad files in a dataset report.
    """

    def __init__(self, source: str | None, problem: str, fix: str) -> None:
        self.source = source
        self.reason = f"{problem}; {fix}"
        super().__init__(f"{source}: {self.reason}" if source else self.reason)


def read_image(
    src: str | Path | bytes, *, max_pixels: int = 50_000_000, max_bytes: int | None = None
) -> np.ndarray:
    """Decode a PNG / JPEG (or BMP / TIFF) file or its bytes into a grayscale image.

    Returns an H×W ``uint8`` array in 0..255, upright according to the EXIF orientation tag.
    Colour images become luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); transparent pixels
    are composited over black; 16-bit images are rescaled linearly from their own min..max to
    0..255, because many radiographs use only 10-12 of their 16 bits and a fixed /257 would leave
    them dark (a constant 16-bit image becomes all zeros).

    ``max_pixels`` (width × height) is checked from the header before any pixel is decoded, so a
    small file that claims a huge size (a decompression bomb) costs nothing. ``max_bytes`` limits
    the file size (``None``: no limit). Raises :class:`ImageError` for a missing or empty file,
    data that is not an image, truncated or corrupt pixel data, too many pixels or bytes, and
    images smaller than 8×8.
    """
    source = None if isinstance(src, bytes) else str(src)
    with _open_source(src, source, max_bytes) as fp, _open_header(fp, source, max_pixels) as im:
        _decode_pixels(im, source)
        if im.mode not in _SUPPORTED_MODES:
            raise ImageError(
                source,
                f"unsupported colour mode {im.mode!r}",
                "re-export the image as an 8- or 16-bit grayscale or RGB PNG / JPEG",
            )
        return _to_gray_uint8(im)


def describe(src: str | Path | bytes) -> tuple[int, int, str]:
    """Return ``(width, height, PIL mode)`` of an image from its header, without decoding pixels.

    Width and height are as stored in the file, before any EXIF rotation (finding a PNG's EXIF
    can mean reading the whole file); the array from :func:`read_image` is upright and may be
    H×W swapped. The mode is the file's own (e.g. ``"I;16"``, ``"RGBA"``), which
    :func:`read_image` discards. Raises :class:`ImageError` when the header cannot be read.
    """
    source = None if isinstance(src, bytes) else str(src)
    # No pixel limit here: describing a bomb is harmless, decoding it is what read_image stops.
    with _open_source(src, source, None) as fp, _open_header(fp, source, None) as im:
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
            f"the file is {_human_bytes(size)}, over the {_human_bytes(max_bytes)} limit",
            "downscale it or save it as a compressed PNG / JPEG",
        )
    return io.BytesIO(src) if isinstance(src, bytes) else Path(src).open("rb")


def _human_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _open_header(fp: IO[bytes], source: str | None, max_pixels: int | None) -> Image.Image:
    """Parse the header only, refusing non-images, bombs and tiny images before decoding."""
    try:
        im = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(
            source,
            "cannot identify image file: this is not a PNG, JPEG, BMP or TIFF image",
            "make sure the file really is an image (not a renamed text or HTML file) and "
            "re-export it as PNG or JPEG",
        ) from None
    except Image.DecompressionBombError as err:
        # PIL's own limit fires inside open() for sizes far beyond ours; same problem, same fix.
        raise ImageError(source, f"too many pixels ({err})", _BOMB_FIX) from None
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        im.close()
        raise ImageError(
            source,
            f"the header claims {width}×{height} = {width * height:,} pixels, over the "
            f"{max_pixels:,} pixel limit (a possible decompression bomb)",
            _BOMB_FIX,
        )
    if min(width, height) < MIN_SIDE:
        im.close()
        raise ImageError(
            source,
            f"the image is only {width}×{height} pixels, too small to be a chest X-ray "
            f"(minimum {MIN_SIDE}×{MIN_SIDE})",
            "use the full-resolution radiograph, not a thumbnail",
        )
    return im


def _decode_pixels(im: Image.Image, source: str | None) -> None:
    """Decode all pixel data now, so that truncated or corrupt files fail here, loudly."""
    # PIL's format plugins signal bad data with many exception types (OSError, SyntaxError,
    # EOFError, struct.error...), so at this edge every one of them becomes an ImageError.
    try:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as err:
        raise ImageError(
            source,
            f"the image data is truncated or corrupt ({err})",
            "the file was probably cut short while downloading or copying; fetch it again",
        ) from None


def _to_gray_uint8(im: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any supported mode to an H×W uint8 array."""
    if im.mode in _SIXTEEN_BIT_MODES:
        wide = np.asarray(im, dtype=np.float64)
        lo, hi = float(wide.min()), float(wide.max())
        if hi == lo:
            return np.zeros(wide.shape, dtype=np.uint8)
        return np.rint((wide - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, im.convert("RGBA"))
    if im.mode != "L":
        im = im.convert("L")
    return np.array(im, dtype=np.uint8)

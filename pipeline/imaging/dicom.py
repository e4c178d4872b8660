"""Read a DICOM radiograph into the same grayscale uint8 image a PNG export would give.

Called by :func:`pipeline.imaging.decode.decode` for every file that carries the ``DICM`` marker
after its 128-byte preamble, whatever its name, so every consumer (dataset scan, preprocessing, the
predictor, explanations, both apps) reads DICOM the same way. The display pipeline follows the
standard's order (DICOM PS3.4 N.2), with pydicom's own implementations:

1. Modality LUT: the Modality LUT Sequence, or Rescale Slope / Intercept
   (:func:`pydicom.pixels.apply_modality_lut`);
2. VOI LUT: the VOI LUT Sequence, or Window Center / Width with its VOI LUT Function
   (:func:`pydicom.pixels.apply_voi_lut`);
3. to 8 bits by the window: the VOI output range (or, without any VOI, the image's own
   min..max, like a 16-bit PNG) is mapped linearly to 0..255 — never ``2**BitsStored - 1``, which
   clinical 12-16-bit data rarely fills (torchxrayvision's ``read_xray_dcm`` does that, and skips
   step 1);
4. MONOCHROME1 (bone dark) inverted, so bone is bright as in every other input.

Every stored value maps to one output value, so steps 1-4 are computed once on a table of all
2**BitsAllocated stored values and the frame is looked up through it: the full-resolution frame
is never turned into floats (a 2,500 × 3,000 image would need 60 MB per float copy).

Privacy: only the tags in :data:`IMAGE_TAGS` are ever parsed (pydicom passes over every other
element without decoding its value, so names, IDs and dates never become Python strings, a
warning or a log line), and no message quotes the header beyond them.
"""

from __future__ import annotations

import re
import warnings
from typing import IO

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from pipeline.imaging.decoded import (
    DECODE_BUDGET,
    Decoded,
    ImageError,
    check_dimensions,
    reduction,
)

# The header elements the image needs; nothing else is read from the file.
IMAGE_TAGS = (
    "Modality",
    "NumberOfFrames",
    "PresentationIntentType",
    "ViewPosition",
    "BurnedInAnnotation",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
)

# Projection radiography: computed (CR) and digital (DX) radiography, film radiographs (RG), and
# "other" (OT), which film digitisers and secondary captures write; whether an OT image is a
# chest X-ray is left to the image checks that follow, as for a PNG.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "OT"})
_NOT_RADIOGRAPHS = {
    "CT": "a CT slice",
    "MR": "an MRI slice",
    "US": "an ultrasound image",
    "NM": "a nuclear-medicine image",
    "PT": "a PET image",
    "MG": "a mammogram",
    "XA": "an X-ray angiogram",
    "RF": "a fluoroscopy image",
    "IO": "an intra-oral dental X-ray",
    "PX": "a panoramic dental X-ray",
    "DG": "a diaphanography image",
    "XC": "a camera photograph",
    "ES": "an endoscopy image",
    "OP": "an eye photograph",
    "SM": "a microscopy slide",
    "ECG": "an ECG",
    "SR": "a structured report (text, no image)",
    "SEG": "a segmentation",
    "RTSTRUCT": "a radiotherapy structure set",
    "RTDOSE": "a radiotherapy dose map",
}
# View Position defined terms (PS3.3 C.8.11.5): frontal, lateral, decubitus, oblique.
VIEWS = frozenset({"PA", "AP", "LL", "RL", "LLD", "RLD", "LLO", "RLO"})
LATERAL_VIEWS = frozenset({"LL", "RL"})

# Of the installed plugins (see README, "DICOM"), the fastest and leanest for each syntax; the
# others are the fallback. pydicom's default order tries gdcm first, which is 3× slower on
# JPEG-LS and needs twice the memory on JPEG-LS and JPEG 2000 (BENCHMARKS.md, "DICOM").
_PREFERRED_PLUGIN = {
    RLELossless: "pylibjpeg",
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
    JPEG2000: "pylibjpeg",
    HTJ2KLossless: "pylibjpeg",
    HTJ2KLosslessRPCL: "pylibjpeg",
    HTJ2K: "pylibjpeg",
}
# A file with none of these has no image to read.
_IMAGE_FIELDS = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
# A UID as PS3.5 9.1 defines it: digits and dots, at most 64 characters. Anything else in the
# transfer syntax field is never quoted back (it could be text crafted to mislead a reader).
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Frame rows looked up at once: NumPy's take() widens the uint16 indices to int64 first, which
# for a whole 7.5-megapixel frame would be a 60 MB temporary.
_ROWS_PER_LOOKUP = 256

_EXPORT = "export the image as PNG from a DICOM viewer"
_TRUNCATED_FIX = "the file was probably cut short while downloading or copying; fetch it again"


def read(
    fp: IO[bytes], source: str | None, max_pixels: int | None, *, for_processing: str = "refuse"
) -> Decoded:
    """Decode the DICOM file ``fp`` (positioned at its start) into a :class:`Decoded` image.

    ``source`` names the file in messages; ``max_pixels`` (Rows × Columns) is checked from the
    header before any pixel is decoded. ``for_processing`` is the policy for raw detector images
    (Presentation Intent Type FOR PROCESSING): ``"refuse"`` (default) or ``"warn"`` (decode them
    and say so in ``notes``). Raises :class:`ImageError` with one sentence for each refusal: not
    a radiograph (CT, MR, US...), several frames, a FOR PROCESSING image, a colour image, a pixel
    format or a transfer syntax that no installed decoder reads, no pixel data, truncated or
    corrupt pixel data, too many pixels.
    """
    if for_processing not in ("refuse", "warn"):
        raise ValueError(f"for_processing must be 'refuse' or 'warn', got {for_processing!r}")
    header = _read_header(fp, source)
    try:
        notes = _check_header(header, source, max_pixels, for_processing)
    except ImageError:
        raise
    except (ValueError, TypeError):  # e.g. Number of Frames "two", Bits Stored missing
        raise ImageError(
            source, "the DICOM header describes the image with malformed values", _EXPORT
        ) from None
    if len(fp.read(8)) < 8:  # the header was read up to the pixel data, which is not there
        raise ImageError(
            source,
            "the DICOM file holds no image (its pixel data is missing)",
            "it may be a report or a header-only object; " + _EXPORT,
        )
    fp.seek(0)
    rows, columns = int(header.Rows), int(header.Columns)
    factor = reduction(columns, rows)
    with DECODE_BUDGET.reserve(decode_cost(header), source):
        frame = _decode_frame(fp, source, header.file_meta.TransferSyntaxUID)
        if frame.shape != (rows, columns):
            raise ImageError(source, "the DICOM pixel data is truncated or corrupt", _TRUNCATED_FIX)
        try:
            pixels = _to_uint8(frame, header, factor)
        except ValueError:  # pydicom's message for a Window Width under 1 or a malformed LUT
            raise ImageError(
                source,
                "the DICOM header's display settings (window or VOI LUT) are invalid",
                _EXPORT,
            ) from None
        del frame
    view = str(header.get("ViewPosition", "") or "").strip().upper()
    return Decoded(
        pixels=pixels,
        format="DICOM",
        view=view if view in VIEWS else None,
        notes=notes,
        size=(columns, rows),
    )


def decode_cost(header: Dataset) -> int:
    """Bytes of memory decoding the image takes at most: the decoded frame twice (a decoder's
    output and the copy pydicom may make of it) and the 8-bit image, reduced to MAX_SIDE."""
    rows, columns = int(header.Rows), int(header.Columns)
    raster = rows * columns * int(header.BitsAllocated) // 8
    return 2 * raster + rows * columns // reduction(columns, rows) ** 2


def describe(fp: IO[bytes], source: str | None) -> tuple[int, int, str]:
    """``(width, height, mode)`` from the header alone, mode e.g. ``"DICOM MONOCHROME1 12-bit"``."""
    header = _read_header(fp, source)
    photometric = str(header.get("PhotometricInterpretation", "") or "?").strip()[:16]
    bits = header.get("BitsStored", header.get("BitsAllocated", "?"))
    mode = f"DICOM {photometric} {bits}-bit"
    return int(header.get("Columns", 0)), int(header.get("Rows", 0)), mode


def _read_header(fp: IO[bytes], source: str | None) -> Dataset:
    """The :data:`IMAGE_TAGS` of the file (and its transfer syntax), stopping at the pixel data."""
    # pydicom signals a bad header with many exception types (InvalidDicomError, EOFError,
    # struct.error, ValueError...), so at this edge every one of them becomes an ImageError.
    try:
        # pydicom warns (and logs) about non-conforming values of the elements it parses; only
        # the image tags are parsed, the checks below judge their values, and a dataset scan
        # must not print a warning per file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(IMAGE_TAGS))
            header.file_meta.TransferSyntaxUID  # noqa: B018 - a file without one is refused here
            list(header)  # values are converted when first read: here, inside these guards
    except Exception as err:
        raise ImageError(
            source,
            "the file starts like a DICOM file but its header cannot be read "
            f"({type(err).__name__})",
            "fetch it again, or " + _EXPORT,
        ) from None
    return header


def _check_header(
    header: Dataset, source: str | None, max_pixels: int | None, for_processing: str
) -> tuple[str, ...]:
    """Refuse what the header alone shows cannot be read as a chest radiograph; return notes."""
    modality = str(header.get("Modality", "") or "").strip().upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        what = _NOT_RADIOGRAPHS.get(modality, f"an image of DICOM modality {modality[:16]}")
        raise ImageError(
            source,
            f"this is {what}, not a chest X-ray",
            "use a chest radiograph (DICOM modality CR or DX)",
        )
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(
            source,
            f"this DICOM file holds {frames} frames (a cine loop or a series), not one radiograph",
            "export the single frontal chest image",
        )
    notes = []
    intent = str(header.get("PresentationIntentType", "") or "").strip().upper()
    if intent == "FOR PROCESSING":
        raw = (
            "this is a raw detector image (Presentation Intent Type FOR PROCESSING), not the "
            "processed image a radiologist reads"
        )
        if for_processing == "refuse":
            raise ImageError(
                source, raw, "export the FOR PRESENTATION image from the X-ray system or PACS"
            )
        notes.append(f"{raw}; the model was trained on processed images, so the result may be off")
    if not any(tag in header for tag in _IMAGE_FIELDS):
        raise ImageError(
            source,
            "the DICOM file holds no image (its header has none of the image fields: Rows, "
            "Columns, Bits Allocated, Photometric Interpretation)",
            "it may be a report or a header-only object; " + _EXPORT,
        )
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    photometric = str(header.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:
        raise ImageError(
            source,
            "the DICOM header does not say how its pixels are to be shown (Photometric "
            "Interpretation is missing)",
            _EXPORT,
        )
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(
            source,
            f"this DICOM image is not grayscale (Photometric Interpretation "
            f"{photometric[:16] or 'missing'}, {samples} samples per pixel); X-rays are "
            "MONOCHROME1 or MONOCHROME2",
            "upload the radiograph itself, not a coloured screenshot of it",
        )
    bits = header.get("BitsAllocated")
    if bits not in (8, 16) or "Rows" not in header or "Columns" not in header:
        raise ImageError(
            source,
            f"unsupported DICOM pixel format (Bits Allocated {bits}; 8 or 16 expected, with "
            "Rows and Columns)",
            _EXPORT,
        )
    check_dimensions(int(header.Columns), int(header.Rows), source, max_pixels)
    declared = str(header.file_meta.TransferSyntaxUID)
    syntax = UID(declared if len(declared) <= 64 and _UID.fullmatch(declared) else "0")
    try:
        readable = get_decoder(syntax).is_available
    except NotImplementedError:
        readable = False
    # 12-bit JPEG Extended is read by pylibjpeg-libjpeg alone, which is GPLv3 and not installed.
    readable = readable and not (syntax == JPEGExtended12Bit and int(header.BitsStored or 8) > 8)
    if not readable:
        if syntax == "0":
            what = "in a form its header does not name properly (a malformed transfer syntax)"
        elif syntax.name != str(syntax):
            what = f"as {syntax.name} (transfer syntax {syntax})"
        else:
            what = f"in an unknown form (transfer syntax {syntax})"
        raise ImageError(
            source,
            f"this DICOM file is compressed {what}, which none of the installed decoders reads",
            "export it uncompressed, as JPEG 2000 or as PNG",
        )
    if str(header.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        notes.append(
            "the file says that text is burned into the image (Burned In Annotation: YES); "
            "text on an image is a known shortcut for a model, so read the result with care"
        )
    return tuple(notes)


def _decode_frame(fp: IO[bytes], source: str | None, syntax: UID) -> np.ndarray:
    """The stored pixel values (H×W, uint or int of BitsAllocated): the preferred plugin first,
    then each other installed one ("" is pydicom's own reader of uncompressed data)."""
    available = list(get_decoder(syntax).available_plugins)
    preferred = _PREFERRED_PLUGIN.get(syntax)
    for plugin in sorted(available, key=lambda name: name != preferred) or [""]:
        fp.seek(0)
        # Decoders report bad data with many exception types (ValueError, RuntimeError, their own
        # errors...): each means "try the next plugin", and after the last an ImageError.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # as in _read_header
                return pixel_array(fp, decoding_plugin=plugin)
        except Exception:
            continue
    raise ImageError(
        source,
        f"the DICOM pixel data ({syntax.name}) is truncated or corrupt: none of the installed "
        "decoders could read it",
        _TRUNCATED_FIX,
    )


def _to_uint8(frame: np.ndarray, header: Dataset, factor: int = 1) -> np.ndarray:
    """Stored values -> displayed uint8 through one lookup table (see the module docstring),
    box-reduced by ``factor`` a band of rows at a time, so the full-size 8-bit image never
    exists."""
    itemsize = frame.dtype.itemsize
    unsigned = np.dtype(f"u{itemsize}")
    # Table index i is the stored value whose bytes read as i unsigned: for signed data the
    # upper half of the table holds the negative values.
    stored = np.arange(1 << (8 * itemsize), dtype=np.int64).astype(unsigned)
    stored = stored.view(frame.dtype).astype(np.int64)
    values = np.asarray(apply_modality_lut(stored, header), dtype=np.float64)
    if "VOILUTSequence" in header:
        # A VOI LUT is indexed by whole modality values (a rescale can make them float).
        whole = np.rint(values).astype(np.int64)
        shown = np.asarray(apply_voi_lut(whole, header, prefer_lut=True), dtype=np.float64)
        lo, hi = float(shown.min()), float(shown.max())
    elif "WindowCenter" in header and "WindowWidth" in header:
        shown = np.asarray(apply_voi_lut(values, header, prefer_lut=False), dtype=np.float64)
        # The window's own output range: far below and above it the VOI function saturates
        # (a SIGMOID window overflows exp() there, harmlessly).
        with np.errstate(over="ignore"):
            ends = apply_voi_lut(np.array([-1e30, 1e30]), header, prefer_lut=False)
        lo, hi = float(ends[0]), float(ends[1])
    else:
        shown = values
        lo_stored, hi_stored = int(frame.min()), int(frame.max())
        # 8-bit data is shown as stored, like an 8-bit PNG; deeper data from its own min..max,
        # like a 16-bit PNG (see pipeline.imaging.decode).
        if int(header.get("BitsStored", 16)) <= 8:
            lo_stored, hi_stored = (-128, 127) if frame.dtype.kind == "i" else (0, 255)
        present = shown[(stored >= lo_stored) & (stored <= hi_stored)]
        lo, hi = float(present.min()), float(present.max())
    # MONOCHROME1 is inverted before rounding, so that it gives exactly what MONOCHROME2 gives.
    inverted = str(header.PhotometricInterpretation).strip().upper() == "MONOCHROME1"
    above = hi - shown if inverted else shown - lo
    if hi <= lo:
        table = np.zeros(len(shown), dtype=np.uint8)
    else:
        table = np.rint(np.clip(above * (255.0 / (hi - lo)), 0, 255)).astype(np.uint8)
    index = frame.view(unsigned)
    height, width = frame.shape
    out = np.empty((-(-height // factor), -(-width // factor)), dtype=np.uint8)
    band = max(factor, _ROWS_PER_LOOKUP // factor * factor)
    for start in range(0, height, band):
        shown_band = np.take(table, index[start : start + band])
        if factor > 1:
            size = (out.shape[1], -(-shown_band.shape[0] // factor))
            shown_band = cv2.resize(shown_band, size, interpolation=cv2.INTER_AREA)
        out[start // factor : start // factor + shown_band.shape[0]] = shown_band
    return out

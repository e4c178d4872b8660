"""DICOM test files built in code with pydicom (no downloads): a radiograph and its variants."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)


def dicom_bytes(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    transfer_syntax: str | None = None,
    declared_syntax: str | None = None,
    **tags: object,
) -> bytes:
    """A DX file holding ``stored`` (H×W uint8/uint16/int16) as its stored values.

    ``tags`` set any other element by keyword (``WindowCenter=...``, ``PatientName=...``); a
    ``transfer_syntax`` compresses the pixels with pydicom's encoders (RLE, JPEG-LS, JPEG 2000);
    a ``declared_syntax`` only says so, with the raw bytes encapsulated as they are.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    for keyword, value in tags.items():
        _quietly(ds, keyword, value)
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    if declared_syntax is not None:
        ds.file_meta.TransferSyntaxUID = declared_syntax
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
    return _encode(ds)


def jpeg_baseline_bytes(pixels: np.ndarray, quality: int = 95) -> bytes:
    """An 8-bit MONOCHROME2 DX file whose pixels are one JPEG baseline frame (made with Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    return _encode(ds)


def displayed_as(image: np.ndarray, **tags: object) -> bytes:
    """A 12-bit MONOCHROME1 file with a rescale and a window whose display is exactly ``image``.

    Stored s = (255 - p) × 16 + 8 for an 8-bit pixel p; Rescale Slope 0.5 and Intercept -4 give
    x = (255 - p) × 8; the LINEAR window (c 1020.5, w 2041) maps x = 0..2040 onto 0..255, i.e.
    (255 - p); MONOCHROME1 inverts that back to p. A viewer's PNG export of it is ``image``.
    """
    stored = ((255 - image.astype(np.uint16)) * 16 + 8).astype(np.uint16)
    return dicom_bytes(
        stored,
        photometric="MONOCHROME1",
        RescaleSlope=0.5,
        RescaleIntercept=-4,
        WindowCenter=1020.5,
        WindowWidth=2041,
        **tags,
    )


def gdcm_compressed(data: bytes, folder: Path) -> bytes:
    """``data`` (an uncompressed file) as JPEG Lossless SV1, which only gdcm's encoder writes."""
    import gdcm

    src, out = folder / "gdcm-in.dcm", folder / "gdcm-out.dcm"
    src.write_bytes(data)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError("gdcm could not compress the image")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(out))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.Write()
    return out.read_bytes()


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _quietly(ds: Dataset, keyword: str, value: object) -> None:
    """Set an element without pydicom's value checks (a test may need a non-conforming value)."""
    with config.disable_value_validation():
        setattr(ds, keyword, value)

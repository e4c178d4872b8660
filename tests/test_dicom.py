"""DICOM input: read as a viewer displays it, compressed or not, and refused clearly otherwise."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from pipeline.config import DataConfig
from pipeline.data import index_cache, scan
from pipeline.imaging.decode import decode, describe, read_image
from pipeline.imaging.decoded import ImageError
from pipeline.preprocessing import cache
from tests.dicom_files import dicom_bytes, displayed_as, gdcm_compressed, jpeg_baseline_bytes

# A PatientName no output of the project may ever contain (over 64 characters, so that pydicom
# would warn about it, quoting its length, if it ever parsed it).
MARKER = "Zzprivatemarker^Qqdonotleak" + "x" * 50


def _radiograph(h: int = 48, w: int = 40) -> np.ndarray:
    """12-bit stored values with structure in both directions: a bright 'bone' band at the top."""
    y, x = np.mgrid[0:h, 0:w]
    img = 500 + 40 * x + 10 * y
    img[:8] = 3800  # bone: the brightest tissue
    return img.astype(np.uint16)


def test_monochrome1_and_monochrome2_of_one_image_read_the_same_with_bone_bright():
    stored = _radiograph()
    inverted = (4095 - stored).astype(np.uint16)  # MONOCHROME1: high stored values are dark
    # The LINEAR window maps x to ((x - (c - 0.5)) / (w - 1) + 0.5); its mirror image over
    # 0..4095 has c' = 4096 - c. With w = 2049 no pixel lands on half a gray level, where
    # rounding up or down could differ between the two.
    for window in ({}, {"WindowCenter": 1500, "WindowWidth": 2049}):
        mono1_window = {"WindowCenter": 4096 - 1500, "WindowWidth": 2049} if window else {}
        mono2 = read_image(dicom_bytes(stored, **window))
        mono1 = read_image(dicom_bytes(inverted, photometric="MONOCHROME1", **mono1_window))
        np.testing.assert_array_equal(mono1, mono2)
        assert mono2[:8].mean() > mono2[8:].mean() + 50  # bone is bright in both


def test_12_bit_rescale_and_window_give_the_hand_worked_8_bit_values():
    # Rescale: x = 2 s - 100. LINEAR window c = 1000, w = 500 (PS3.3 C.11.2.1.2.1):
    #   x <= c - 0.5 - (w - 1) / 2 = 750 -> 0;   x > c - 0.5 + (w - 1) / 2 = 1249 -> 255;
    #   else ((x - 999.5) / 499 + 0.5) × 255, rounded.
    #   s   400   425   437    500     550     600     700
    #   x   700   750   774    900    1000    1100    1300
    #   8b    0     0   12.3   76.7   127.8   178.9    255
    # BitsStored scaling (torchxrayvision: s / 4095 × 255) would give 25, 31, 34, 37 ... 44.
    values = np.array([400, 425, 437, 500, 550, 600, 700], dtype=np.uint16)
    stored = np.tile(values, (8, 2))
    data = dicom_bytes(
        stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=1000, WindowWidth=500
    )
    out = read_image(data)
    np.testing.assert_array_equal(out[0, :7], [0, 0, 12, 77, 128, 179, 255])


def test_without_a_window_the_image_range_is_stretched_like_a_16_bit_png():
    # Signed stored values with a CT-like rescale: min..max of the image become 0..255.
    stored = np.linspace(-1000, 1000, 16 * 16).reshape(16, 16).astype(np.int16)
    out = read_image(dicom_bytes(stored, RescaleSlope=1, RescaleIntercept=-1024))
    assert (out.min(), out.max()) == (0, 255)
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)


def test_a_voi_lut_sequence_is_applied_and_scaled_by_its_own_range():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4, 100, 8]  # 4 entries, first stored value mapped is 100, 8-bit output
    item.LUTData = np.array([10, 50, 90, 130], dtype=np.uint16).tobytes()
    stored = np.tile(np.array([0, 100, 101, 102, 103, 500], dtype=np.uint16), (8, 2))
    out = read_image(dicom_bytes(stored, VOILUTSequence=[item]))
    # Outputs 10..130 (the LUT's own range) map to 0..255; below/above it clamp to the ends.
    np.testing.assert_array_equal(out[0, :6], [0, 0, 85, 170, 255, 255])


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=str)
def test_a_losslessly_compressed_copy_decodes_to_the_uncompressed_pixels(syntax):
    stored = _radiograph(64, 72)
    tags = {"WindowCenter": 2000, "WindowWidth": 3000}
    plain = read_image(dicom_bytes(stored, **tags))
    packed = dicom_bytes(stored, transfer_syntax=syntax, **tags)
    np.testing.assert_array_equal(read_image(packed), plain)


def test_a_jpeg_lossless_copy_decodes_to_the_uncompressed_pixels(tmp_path):
    stored = _radiograph(64, 72)
    tags = {"WindowCenter": 2000, "WindowWidth": 3000}
    plain = dicom_bytes(stored, **tags)
    packed = gdcm_compressed(plain, tmp_path)
    assert decode_syntax(packed) == JPEGLosslessSV1
    np.testing.assert_array_equal(read_image(packed), read_image(plain))


def decode_syntax(data: bytes) -> str:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID


def test_a_jpeg_baseline_copy_decodes_within_the_codec_loss():
    y, x = np.mgrid[0:64, 0:64]
    pixels = (96 + 60 * np.sin(x / 9) * np.cos(y / 13)).astype(np.uint8)
    out = read_image(jpeg_baseline_bytes(pixels, quality=95))
    assert np.abs(out.astype(int) - pixels).mean() < 2.0


def test_a_dicom_file_without_an_extension_is_read_by_its_content(tmp_path):
    path = tmp_path / "IM000001"
    path.write_bytes(displayed_as(_radiograph().astype(np.uint8)))
    decoded = decode(path)
    assert decoded.format == "DICOM"
    assert decoded.view == "PA"
    assert describe(path) == (40, 48, "DICOM MONOCHROME1 12-bit")


def _refusals() -> dict[str, tuple[bytes, list[str]]]:
    stored = _radiograph()
    plain = dicom_bytes(stored)
    header_only = dicom_bytes(stored)
    pixel_tag = header_only.index(b"\xe0\x7f\x10\x00")
    return {
        "ct": (dicom_bytes(stored, Modality="CT"), ["this is a CT slice, not a chest X-ray"]),
        "ultrasound": (dicom_bytes(stored, Modality="US"), ["an ultrasound image"]),
        "multi-frame": (
            dicom_bytes(stored, NumberOfFrames=3, PixelData=np.stack([stored] * 3).tobytes()),
            ["holds 3 frames", "not one radiograph"],
        ),
        "for-processing": (
            dicom_bytes(stored, PresentationIntentType="FOR PROCESSING"),
            ["FOR PROCESSING", "raw detector image", "FOR PRESENTATION"],
        ),
        "mpeg2": (
            dicom_bytes(stored, declared_syntax="1.2.840.10008.1.2.4.100"),
            ["MPEG2 Main Profile / Main Level", "1.2.840.10008.1.2.4.100", "no"],
        ),
        "jpeg-12-bit": (
            dicom_bytes(stored, declared_syntax=JPEGExtended12Bit),
            ["JPEG Extended (Process 2 and 4)", "none of the installed decoders reads"],
        ),
        "no-pixels": (header_only[:pixel_tag], ["no image", "pixel data is missing"]),
        "truncated": (plain[: len(plain) - 1000], ["truncated or corrupt", "fetch it again"]),
        "colour": (
            dicom_bytes(stored, PhotometricInterpretation="RGB"),
            ["not grayscale", "RGB"],
        ),
        "garbled": (bytes(128) + b"DICM" + bytes(40), ["header cannot be read"]),
        "bad-window": (
            dicom_bytes(stored, WindowCenter=5, WindowWidth=0),
            ["display settings (window or VOI LUT) are invalid"],
        ),
        # Number of Frames "zz": pydicom cannot write it, so the written "2 " is overwritten.
        "malformed": (
            dicom_bytes(stored, NumberOfFrames=2).replace(b"IS\x02\x002 ", b"IS\x02\x00zz"),
            ["describes the image with malformed values"],
        ),
    }


@pytest.mark.parametrize("case", list(_refusals()))
def test_each_refusal_has_its_own_clear_message(tmp_path, case):
    data, words = _refusals()[case]
    path = tmp_path / f"{case}.dcm"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message, (case, message)
    assert "Traceback" not in message


def test_for_processing_is_read_with_a_note_when_the_policy_allows_it():
    data = dicom_bytes(_radiograph(), PresentationIntentType="FOR PROCESSING")
    decoded = decode(data, for_processing="warn")
    assert decoded.pixels.shape == (48, 40)
    assert any("FOR PROCESSING" in note for note in decoded.notes)


def test_lateral_view_and_burned_in_text_are_reported():
    decoded = decode(dicom_bytes(_radiograph(), ViewPosition="LL", BurnedInAnnotation="YES"))
    assert decoded.view == "LL"
    assert any("burned into the image" in note for note in decoded.notes)
    assert decode(dicom_bytes(_radiograph())).notes == ()


def test_too_many_pixels_are_refused_from_the_header_before_decoding():
    # The header claims 20,000 × 20,000 16-bit pixels (800 MB) over a few bytes of data.
    claim = dicom_bytes(_radiograph(), Rows=20_000, Columns=20_000)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"20000×20000 = 400,000,000 pixels, over the"):
        read_image(claim, max_pixels=50_000_000)
    assert time.perf_counter() - start < 0.5


def _mixed_dataset(root: Path) -> dict[str, int]:
    """Normal/ and Tuberculosis/ with .dcm, extensionless DICOM and PNG files; name -> label."""
    rng = np.random.default_rng(0)
    expected = {}
    for label, folder in ((0, "Normal"), (1, "Tuberculosis")):
        (root / folder).mkdir(parents=True)
        for k in range(3):
            img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            img = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BILINEAR))
            name = [f"{folder}-{k}.dcm", f"{folder}-{k}", f"{folder}-{k}.png"][k]
            path = root / folder / name
            if name.endswith(".png"):
                Image.fromarray(img).save(path)
            else:
                path.write_bytes(displayed_as(img, PatientName=MARKER))
            expected[name] = label
    return expected


def test_a_folder_mixing_dicom_and_png_scans_with_correct_labels(tmp_path):
    expected = _mixed_dataset(tmp_path / "data")
    index = scan.scan(tmp_path / "data")
    assert index.bad_files == ()
    assert {Path(r.path).name: r.label for r in index.records} == expected
    modes = scan.summarise(index)["modes"]
    assert modes == {"DICOM MONOCHROME1 12-bit": 4, "L": 2}


def test_nlm_names_find_dcm_and_extensionless_dicom(tmp_path):
    img = _radiograph().astype(np.uint8)
    (tmp_path / "CXR_0001_0.dcm").write_bytes(displayed_as(img))
    (tmp_path / "CXR_0002_1").write_bytes(displayed_as(img[::-1].copy()))
    (tmp_path / "manifest.csv").write_text("name,label\n")
    index = scan.scan(tmp_path)
    assert index.layout == "nlm_names"
    assert {Path(r.path).name: r.label for r in index.records} == {
        "CXR_0001_0.dcm": 0,
        "CXR_0002_1": 1,
    }


def test_no_header_field_but_the_image_reaches_messages_logs_or_files(tmp_path, caplog, capfd):
    """The privacy promise: a marker PatientName never leaves the file it came in."""
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "data"
    _mixed_dataset(data)
    bad = data / "Normal" / "ct.dcm"
    bad.write_bytes(dicom_bytes(_radiograph(), Modality="CT", PatientName=MARKER))
    index = index_cache.load_index(data)  # scan, and the index cached on disk
    cache.cached_arrays(index, DataConfig(path=str(data), image_size=32))
    decoded = decode(displayed_as(_radiograph().astype(np.uint8), PatientName=MARKER))
    with pytest.raises(ImageError) as refused:
        read_image(bad)

    said = [str(refused.value), *decoded.notes, *(b.reason for b in index.bad_files)]
    said += [r.getMessage() for r in caplog.records]
    said += list(capfd.readouterr())
    assert not [s for s in said if "Zzprivatemarker" in s]
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert written  # the cache was written, and holds no header field
    assert not [p for p in written if b"Zzprivatemarker" in p.read_bytes()]

"""Decoding: every supported kind of file becomes H×W uint8; every bad one a clear ImageError."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.imaging.decode import MAX_SIDE, DecodeBudget, decode, describe, read_image, resize
from pipeline.imaging.decoded import ImageError


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    """A uint8 image with structure in both directions, so rotations are distinguishable."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 2) % 256).astype(np.uint8)


def _save(tmp_path: Path, name: str, im: Image.Image, **kwargs: object) -> Path:
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width × height 8-bit gray pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def test_8bit_gray_png_is_returned_exactly(tmp_path):
    img = _gradient()
    out = read_image(_save(tmp_path, "gray.png", Image.fromarray(img)))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_bytes_and_path_give_the_same_image(tmp_path):
    path = _save(tmp_path, "gray.png", Image.fromarray(_gradient()))
    np.testing.assert_array_equal(read_image(path.read_bytes()), read_image(str(path)))


def test_16bit_png_using_12_bits_is_stretched_to_full_range(tmp_path):
    # 0..4095 is what a 12-bit detector writes into a 16-bit PNG; /257 would make it near black.
    values = np.linspace(0, 4095, 64 * 32).reshape(32, 64).astype(np.uint16)
    path = _save(tmp_path, "deep.png", Image.fromarray(values))
    assert describe(path)[2] == "I;16"
    out = read_image(path)
    assert out.dtype == np.uint8
    assert (out.min(), out.max()) == (0, 255)
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # order of intensities is kept


def test_rgb_jpeg_becomes_luma(tmp_path):
    red = np.zeros((32, 32, 3), dtype=np.uint8)
    red[..., 0] = 255
    out = read_image(_save(tmp_path, "red.jpg", Image.fromarray(red), quality=95))
    assert out.shape == (32, 32)
    assert abs(int(np.median(out)) - 76) <= 3  # 0.299 × 255


def test_rgba_png_is_composited_over_black(tmp_path):
    rgba = np.full((16, 32, 4), 255, dtype=np.uint8)
    rgba[:, 16:, 3] = 0  # right half fully transparent
    out = read_image(_save(tmp_path, "alpha.png", Image.fromarray(rgba, mode="RGBA")))
    assert np.all(out[:, :16] == 255)
    assert np.all(out[:, 16:] == 0)


def test_gray_alpha_png_is_read(tmp_path):
    la = Image.merge("LA", [Image.fromarray(_gradient()), Image.new("L", (64, 48), 255)])
    np.testing.assert_array_equal(read_image(_save(tmp_path, "la.png", la)), _gradient())


def test_palette_png_matches_its_gray_rendering(tmp_path):
    rgb = Image.fromarray(np.stack([_gradient()] * 3, axis=-1))
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = read_image(_save(tmp_path, "pal.png", pal))
    np.testing.assert_array_equal(out, np.asarray(pal.convert("L")))


def test_cmyk_jpeg_is_read_as_gray(tmp_path):
    img = _gradient()
    cmyk = Image.fromarray(np.stack([img] * 3, axis=-1)).convert("CMYK")
    path = _save(tmp_path, "cmyk.jpg", cmyk, quality=95)
    assert describe(path)[2] == "CMYK"
    out = read_image(path)
    assert out.shape == img.shape
    assert np.mean(np.abs(out.astype(int) - img)) < 6


def test_exif_orientation_6_is_applied(tmp_path):
    # Orientation 6 means "rotate 90° clockwise to display", as phones and some scanners write.
    img = np.zeros((40, 60), dtype=np.uint8)
    img[:10, :20] = 255  # a bright block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, "rotated.jpg", Image.fromarray(img), exif=exif, quality=95)
    assert describe(path)[:2] == (60, 40)  # the header describes the stored pixels
    out = read_image(path)
    assert out.shape == (60, 40)
    expected = np.rot90(img, k=-1)  # clockwise: the block moves to the top-right
    assert np.mean(np.abs(out.astype(int) - expected)) < 4
    assert out[:20, -10:].mean() > 200
    assert out[:20, :10].mean() < 50


def test_resize_gives_the_size_asked_and_keeps_dtype():
    img = _gradient(48, 64)
    out = resize(img, 32)
    assert out.shape == (32, 32)
    assert out.dtype == np.uint8
    assert resize(img, 100).shape == (100, 100)


def _noise_png() -> bytes:
    """A real PNG of random pixels: its compressed data is large, so half of it is truncated."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()


def test_refusals_name_the_file_and_the_problem(tmp_path):
    png = _noise_png()
    cases = {
        "empty.png": (b"", ["empty", "0 bytes"]),
        "notes.png": (b"patient list\nnot an image\n", ["cannot identify", "not a PNG"]),
        "half.png": (png[: len(png) // 2], ["truncated", "again"]),
        # Cut inside its header: PIL raised a bare OSError("Truncated File Read").
        "header-cut.png": (png[:20], ["truncated", "again"]),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as info:
            read_image(path)
        message = str(info.value)
        assert name in message
        for word in words:
            assert word in message, (name, message)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "nowhere.png")


def test_tiny_image_is_refused(tmp_path):
    path = _save(tmp_path, "dot.png", Image.new("L", (1, 1)))
    with pytest.raises(ImageError, match=r"1×1 pixels, too small"):
        read_image(path)


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (10_000, 8_000)])
def test_decompression_bomb_is_refused_from_the_header(width, height):
    # 10,000 × 8,000 passes PIL's own limit, so only our header check stops an 80 MB allocation.
    start = time.perf_counter()
    with pytest.raises(ImageError) as info:
        read_image(_png_claiming(width, height))
    assert time.perf_counter() - start < 0.5
    assert "pixel" in str(info.value)
    assert "decompression bomb" in str(info.value)


def test_file_over_max_bytes_is_refused(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_noise_png())
    size = path.stat().st_size
    with pytest.raises(ImageError, match=rf"{size:,} bytes, over the 1,000 bytes limit"):
        read_image(path, max_bytes=1000)
    assert read_image(path, max_bytes=size).shape == (64, 64)


def test_a_huge_16_bit_image_is_reduced_while_decoding_and_decodes_take_turns():
    big = np.zeros((7000, 7000), np.uint16)
    big[1000:6000, 1000:6000] = 3000  # a 12-bit image in a 16-bit file
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG")
    out = decode(buffer.getvalue()).pixels
    assert max(out.shape) <= MAX_SIDE
    assert out.dtype == np.uint8
    assert out.max() == 255  # rescaled from its own range, not divided by 257

    budget = DecodeBudget(100)
    with (
        pytest.raises(ImageError, match="over the 100 bytes a decode may use"),
        budget.reserve(150, "big.png"),
    ):
        pass
    order: list[str] = []

    def decode_one(name: str) -> None:
        with budget.reserve(60, name):
            order.append(f"{name} start")
            time.sleep(0.2)
            order.append(f"{name} end")

    threads = [threading.Thread(target=decode_one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 60 + 60 > 100: the second waited for the first to finish.
    assert order[1].endswith("end")
    assert budget.used == 0

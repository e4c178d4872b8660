"""Benchmark: reading a full-size DICOM radiograph, uncompressed and in each compressed syntax.

    .venv/bin/python -m bench.dicom [--repeats 5] [--json out.json]

Builds a 2,500 × 3,000 (width × height) 12-bit MONOCHROME1 radiograph with a rescale and a
window (a phantom chest from :mod:`pipeline.data.synth`, enlarged, with detector noise), writes it
uncompressed and as RLE Lossless, JPEG-LS Lossless, JPEG 2000 Lossless (pydicom's encoders) and
JPEG Lossless SV1 (gdcm's encoder) into a temporary folder, then for each file measures
:func:`pipeline.imaging.decode.read_image` — header checks, decoding, modality LUT, window,
inversion, 8 bits — as the app and the dataset scan call it:

* the median wall time of ``--repeats`` reads, after one warm-up read;
* in a fresh process each, after a warm-up read of a small file of the same syntax: the peak of
  Python-visible allocations during one read (tracemalloc; NumPy's buffers included, a C
  library's own buffers not) and the growth of the process's peak resident memory (VmHWM, reset
  before the read; it does include them), both also in units of the 15 MB uint16 frame.

Prints a table; the figures in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

WIDTH, HEIGHT = 2_500, 3_000
FRAME_BYTES = WIDTH * HEIGHT * 2  # the decoded uint16 frame
SYNTAXES = {
    "uncompressed": "1.2.840.10008.1.2.1",
    "RLE Lossless": "1.2.840.10008.1.2.5",
    "JPEG-LS Lossless": "1.2.840.10008.1.2.4.80",
    "JPEG 2000 Lossless": "1.2.840.10008.1.2.4.90",
    "JPEG Lossless SV1": "1.2.840.10008.1.2.4.70",
}


def radiograph(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """12-bit stored values (uint16, MONOCHROME1: bone dark) of an enlarged phantom chest."""
    from pipeline.data import synth

    rng = np.random.default_rng(seed)
    chest = synth.render_phantom(rng, 512, True).image.astype(np.float32)
    big = cv2.resize(chest, (width, height), interpolation=cv2.INTER_CUBIC)
    stored = (255 - big) * 16 + rng.normal(0, 6, big.shape)  # detector noise, bone dark
    return np.clip(stored, 0, 4095).astype(np.uint16)


def write_versions(folder: Path, stored: np.ndarray) -> dict[str, Path]:
    """The radiograph in each syntax of SYNTAXES, as files in ``folder``."""
    import pydicom

    from tests.dicom_files import dicom_bytes, gdcm_compressed

    tags = {"RescaleSlope": 1, "RescaleIntercept": 0, "WindowCenter": 2048, "WindowWidth": 4000}
    plain = dicom_bytes(stored, photometric="MONOCHROME1", **tags)
    paths = {"uncompressed": folder / "uncompressed.dcm"}
    paths["uncompressed"].write_bytes(plain)
    for name, uid in SYNTAXES.items():
        path = folder / f"{name.replace(' ', '-')}.dcm"
        if name == "uncompressed":
            continue
        if name == "JPEG Lossless SV1":  # pydicom has no JPEG encoder; gdcm has
            path.write_bytes(gdcm_compressed(plain, folder))
        else:
            ds = pydicom.dcmread(io.BytesIO(plain))
            ds.compress(uid)
            ds.save_as(path, enforce_file_format=True)
        paths[name] = path
    return paths


def measure_memory(path: Path, warm: Path) -> dict[str, float]:
    """Peak traced allocations and peak-RSS growth of one read, in a fresh process."""
    code = (
        "import json, sys, tracemalloc\n"
        "from pathlib import Path\n"
        "from pipeline.imaging.decode import read_image\n"
        "def kib(key):\n"
        "    status = Path('/proc/self/status').read_text().splitlines()\n"
        "    return int(next(line.split()[1] for line in status if line.startswith(key)))\n"
        "read_image(sys.argv[2])\n"  # imports and codec libraries loaded before measuring
        "Path('/proc/self/clear_refs').write_text('5')\n"  # reset the peak (VmHWM) to now
        "before = kib('VmRSS:')\n"
        "tracemalloc.start()\n"
        "img = read_image(sys.argv[1])\n"
        "_, peak = tracemalloc.get_traced_memory()\n"
        "growth = kib('VmHWM:') - before\n"
        "print(json.dumps({'traced_mb': peak / 1e6, 'rss_growth_mb': growth * 1024 / 1e6}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(warm)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dicom", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="reads timed per file (5)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from pipeline.imaging.decode import read_image

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        folder = Path(tmp)
        (folder / "small").mkdir()
        big = write_versions(folder, radiograph())
        small = write_versions(folder / "small", radiograph(256, 256, seed=1))
        reference = read_image(big["uncompressed"])
        for name, path in big.items():
            out = read_image(path)  # warm-up, and the check that it decodes what was written
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                read_image(path)
                times.append(time.perf_counter() - start)
            memory = measure_memory(path, small[name])
            rows.append(
                {
                    "syntax": name,
                    "file_mb": path.stat().st_size / 1e6,
                    "median_s": statistics.median(times),
                    "same_as_uncompressed": bool(np.array_equal(out, reference)),
                    **memory,
                }
            )

    table = Table(title=f"read_image of a {WIDTH} × {HEIGHT} 12-bit radiograph")
    for column in ("syntax", "file MB", "read s", "= uncompr.", "traced peak", "peak RSS +"):
        table.add_column(column, justify="left" if column == "syntax" else "right")
    for r in rows:
        table.add_row(
            r["syntax"],
            f"{r['file_mb']:.1f}",
            f"{r['median_s']:.3f}",
            "yes" if r["same_as_uncompressed"] else "NO",
            f"{r['traced_mb']:.1f} MB ({r['traced_mb'] * 1e6 / FRAME_BYTES:.1f} frames)",
            f"{r['rss_growth_mb']:.1f} MB ({r['rss_growth_mb'] * 1e6 / FRAME_BYTES:.1f} frames)",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

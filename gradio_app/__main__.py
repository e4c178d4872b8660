"""``python -m gradio_app``: serve the public app.

Binds ``0.0.0.0:$PORT`` when ``PORT`` is set (a platform such as Heroku or Render) and
``127.0.0.1:7860`` otherwise; ``--host`` / ``--port`` override both. The run store is the usual
one (``TBXRAY_RUNS_DIR`` / ``TBXRAY_DB_URL``). Uploads live in a private temporary folder that is
cleaned every minute (files older than 10 minutes) and deleted when the app stops: on Ctrl-C
and on SIGTERM (what systemd, Docker and hosting platforms send), the uploads first, at once,
then the server is closed. A process killed outright cannot clean up: the folders it left (named
with its process id) are removed when the app next starts.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import paths, quiet

if TYPE_CHECKING:
    from gradio_app.service import ModelSource

# TensorFlow, Keras and Gradio are imported in main(), after these and the upload folder are set.
quiet.install()
# A public medical app does not send usage analytics to Gradio.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue keeps timing records of its last N events and, by default, summarises all of
# them in a pandas DataFrame after every event: bound both (the monitoring page is off anyway).
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    port = os.environ.get("PORT")
    p = argparse.ArgumentParser(
        prog="python -m gradio_app",
        description="Serve the public TB X-ray app (the run the store promotes, else the newest "
        "baseline).",
    )
    p.add_argument(
        "--host",
        default="0.0.0.0" if port else "127.0.0.1",
        help="address to bind (default: 0.0.0.0 when $PORT is set, else 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=int(port or 7860), help="default: $PORT or 7860")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (default 20)")
    p.add_argument(
        "--max-megapixels", type=float, default=50.0, help="most pixels per image (default 50)"
    )
    p.add_argument(
        "--dicom-for-processing",
        choices=["refuse", "warn"],
        default="refuse",
        help="raw DICOM detector images (Presentation Intent FOR PROCESSING): refuse them "
        "(default), or assess them with a warning beside the verdict",
    )
    p.add_argument("--queue-size", type=int, default=64, help="most waiting requests (64)")
    p.add_argument(
        "--predict-concurrency", type=int, default=2, help="predictions at once (default 2)"
    )
    p.add_argument("--explain-concurrency", type=int, default=1, help="LIME/SHAP at once (1)")
    p.add_argument(
        "--examples",
        metavar="DIR",
        help="offer the PNG / JPEG / DICOM (.dcm) images of this folder as examples (default: a "
        "few held-out test images of the served run, when its dataset is here)",
    )
    p.add_argument("--no-examples", action="store_true", help="offer no example images")
    return p.parse_args(argv)


def example_images(source: ModelSource, per_class: int = 2) -> list[Path]:
    """A few held-out test images of the served run, when its dataset is on this machine.

    Test images were never used for training, for choosing the threshold or for fitting the
    out-of-distribution reference. Empty when there is no run or its dataset is elsewhere.
    """
    served = source.current()
    if served is None:
        return []
    data = Path(served.predictor.config.data.root)
    try:
        with (Path(served.run.artifacts_dir or "") / "predictions.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    except (OSError, KeyError):
        return []
    picked = [
        data / r["path"]
        for label in ("0", "1")
        for r in [r for r in rows if r["label"] == label][:per_class]
    ]
    return picked if all(p.is_file() for p in picked) else []


def _image_files(folder: str) -> list[Path]:
    exts = {".png", ".jpg", ".jpeg", ".dcm"}
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)


# The app's temporary folders: PREFIX<pid>-<random> (gradio_app.app names them).
_OWN_FOLDER = re.compile(r"tbxray-(?:uploads|outputs)-(\d+)-")


def remove_stale_folders(root: Path | None = None) -> list[Path]:
    """Remove the upload and output folders that app processes no longer running left in
    ``root`` (the temporary folder); returns them."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob("tbxray-*-*"):
        match = _OWN_FOLDER.match(folder.name)
        if match and folder.is_dir() and not paths.process_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _on_terminate(*folders: Path) -> None:
    """On SIGTERM: delete the uploads at once, then stop as on Ctrl-C."""

    def stop(signum: int, frame: object) -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stale = remove_stale_folders()
    if stale:
        print(f"removed {len(stale)} folder(s) left by stopped app processes", file=sys.stderr)
    from gradio_app.app import UPLOADS_PREFIX

    uploads = Path(tempfile.mkdtemp(prefix=f"{UPLOADS_PREFIX}{os.getpid()}-"))
    # Before Gradio is imported: it reads the upload folder at import time.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    _on_terminate(uploads)
    try:
        from db import StoreError
        from gradio_app.app import build_demo, serve
        from gradio_app.service import Limits, ModelSource

        limits = Limits(
            max_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=int(args.max_megapixels * 1e6),
            for_processing=args.dicom_for_processing,
        )
        try:
            source = ModelSource()
        except StoreError as err:
            print(f"the public app cannot start: {err}", file=sys.stderr)
            return 2
        if source.current() is None:
            print(
                "no run to serve yet: the app says so until one is trained or promoted",
                file=sys.stderr,
            )
        if args.no_examples:
            examples = []
        elif args.examples:
            examples = _image_files(args.examples)
        else:
            examples = example_images(source)
        demo = build_demo(
            source,
            limits,
            examples,
            predict_concurrency=args.predict_concurrency,
            explain_concurrency=args.explain_concurrency,
            queue_size=args.queue_size,
        )
        _on_terminate(uploads, demo.own_files.folder)
        # KeyboardInterrupt here: stopped while starting, or a second Ctrl-C while closing.
        with contextlib.suppress(KeyboardInterrupt):
            serve(demo, limits, host=args.host, port=args.port)
        print("public app stopped", file=sys.stderr)
    except KeyboardInterrupt:  # stopped while loading the model
        print("public app stopped", file=sys.stderr)
    finally:
        shutil.rmtree(uploads, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""TensorFlow's start-up noise stays out of the terminal and the run logs; real errors do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from db import RunStore
from pipeline import quiet
from pipeline.config import preset
from pipeline.runs.worker import log_path

ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21 wrote on start-up on a machine without a GPU, whatever the log level.
NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
)


def pipeline_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` as a user runs it (this test session's store and cache)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def noise_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def test_a_run_log_and_the_commands_that_load_tensorflow_start_without_noise(phantoms):
    store = RunStore()
    cfg = preset("smoke", **{"data.path": str(phantoms), "name": "quiet"})
    run = store.create_run(json.loads(cfg.to_json()), name=cfg.name)

    worker = pipeline_cli("worker", "--once", "--name", "w")
    assert worker.returncode == 0, worker.stderr
    assert noise_in(worker.stdout + worker.stderr) == []
    run = store.get_run(run.id)
    log = log_path(run).read_text()
    assert log.startswith(f"run {run.id} ("), log[:500]
    assert noise_in(log) == []

    image = next((phantoms / "Tuberculosis").glob("*.png"))
    predicted = pipeline_cli("predict", run.id, str(image))
    assert predicted.returncode == 0, predicted.stderr
    assert "threshold" in predicted.stdout
    assert noise_in(predicted.stderr) == []

    # A real error after TensorFlow has started still reaches stderr, alone.
    (Path(run.artifacts_dir) / "model.keras").write_bytes(b"not a keras file")
    broken = pipeline_cli("predict", run.id, str(image))
    assert broken.returncode == 2
    assert "error:" in broken.stderr
    assert "model.keras" in broken.stderr
    assert noise_in(broken.stderr) == []


def test_only_the_known_start_up_lines_are_filtered(capfd):
    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1796071974.291980   24891 port.cc:153] oneDNN custom operations are on. "
        b"You may see slightly different numerical results.",
        b"W0000 00:00:1796071974.291980   24891 some_op.cc:12] a real warning",
        b"I0000 00:00:1796071974.293082   24891 cudart_stub.cc:31] Could not find cuda drivers "
        b"on your machine, GPU will not be used.",
        b"E0000 00:00:1796071981.875137   24891 cuda_platform.cc:52] failed call to cuInit: "
        b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        b"E0000 00:00:1796071981.875137   24891 cuda_platform.cc:52] failed call to cuInit: "
        b"CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver",
        b"Traceback (most recent call last):",
    ]
    with quiet.noise_filtered():
        os.write(2, b"\n".join(lines) + b"\n")
    assert capfd.readouterr().err.splitlines() == [
        "W0000 00:00:1796071974.291980   24891 some_op.cc:12] a real warning",
        "E0000 00:00:1796071981.875137   24891 cuda_platform.cc:52] failed call to cuInit: "
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver",
        "Traceback (most recent call last):",
    ]

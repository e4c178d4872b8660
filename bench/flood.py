"""Benchmark: the public app's verdicts while explanations flood it, and huge uploads' memory.

    .venv/bin/python -m bench.flood [--requests 64] [--flooders 4] [--json out.json]

Starts ``python -m gradio_app`` (as ``bench.serve`` does, serving the run the store names) and
measures, with each simulated visitor on an address of its own (``X-Forwarded-For``, which the
server trusts from localhost, as from a reverse proxy there):

1. ``/predict`` p50 / p95 for 1 and 16 clients, alone;
2. the same while ``--flooders`` clients send LIME requests as fast as they can (each keeps
   sending whatever it is refused), with the predictions refused and the flood's own
   answered / refused counts;
0. first, the server's peak memory (VmHWM) over four concurrent uploads of a 16-bit 7000×7000
   PNG, above its resident memory when idle after a warm-up.

Targets (issue 16): ``/predict`` p95 under the flood within 2× of its unloaded value, no
prediction refused; peak memory of the four huge uploads at most 300 MB above idle.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.serve import free_port, rss_mib, start_app, summary

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def peak_mib(pid: int) -> float:
    """Peak resident memory of a process so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def call(http: httpx.Client, api: str, data: bytes, visitor: str) -> tuple[float, int, dict | None]:
    """Upload and call ``api`` as one visitor; (seconds, HTTP status of the call, result)."""
    headers = {"X-Forwarded-For": visitor}
    start = time.perf_counter()
    up = http.post("/gradio_api/upload", files={"files": ("x.png", data)}, headers=headers)
    if up.status_code != 200:
        return time.perf_counter() - start, up.status_code, None
    payload = {"data": [{"path": up.json()[0], "meta": {"_type": "gradio.FileData"}}]}
    event = http.post(f"/gradio_api/call/{api}", json=payload, headers=headers)
    if event.status_code != 200:
        return time.perf_counter() - start, event.status_code, None
    text = http.get(f"/gradio_api/call/{api}/{event.json()['event_id']}", headers=headers).text
    lines = text.splitlines()
    out = None
    if "event: complete" in lines:
        out = json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))
    return time.perf_counter() - start, 200, out


def predictions(url: str, blobs: list[bytes], clients: int, requests: int) -> dict:
    latencies, errors = [], []
    counter, lock = iter(range(requests)), threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while (i := next(counter, None)) is not None:
                # Each prediction from a visitor of its own, as on a public site: the per-client
                # limits are not what is measured here.
                visitor = f"10.1.{i // 250}.{i % 250}"
                seconds, status, out = call(http, "predict", blobs[i % len(blobs)], visitor)
                with lock:
                    if out is None:
                        errors.append(f"HTTP {status}")
                    else:
                        latencies.append(seconds)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    return summary(latencies, errors, time.perf_counter() - start)


def flood(url: str, blob: bytes, flooders: int, stop: threading.Event) -> dict:
    counts = {"answered": 0, "refused": 0}  # refused: HTTP 429, or no answer
    lock = threading.Lock()

    def flooder(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while not stop.is_set():
                try:
                    *_, out = call(http, "lime", blob, f"10.2.0.{k}")
                except httpx.HTTPError:
                    out = None
                with lock:
                    counts["answered" if out is not None else "refused"] += 1
                if out is None:
                    time.sleep(0.05)

    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(flooders)]
    [t.start() for t in threads]
    return counts


def huge_png() -> bytes:
    big = np.zeros((7000, 7000), np.uint16)
    big[1000:6000, 1000:6000] = 3000
    big[::7, ::5] = 1200
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="predictions per phase")
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from db import RunStore

    run = RunStore().served_run()
    if run is None:
        raise SystemExit(
            "the store serves no run: promote one first (python -m pipeline promote RUN)"
        )
    data = Path(run.config["data"]["path"])
    split = json.loads((Path(run.artifacts_dir) / "split.json").read_text())
    blobs = [(data / p).read_bytes() for p in split["test"][:40]]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_app(port, Path(tempfile.gettempdir()) / f"bench-flood-{port}.log")
    results: dict = {"run": run.id}
    try:
        predictions(url, blobs, 1, 5)  # warm-up
        time.sleep(2)
        idle = rss_mib(proc.pid)
        huge = huge_png()

        def upload_huge(k: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as http:
                call(http, "predict", huge, f"10.3.0.{k}")

        threads = [threading.Thread(target=upload_huge, args=(k,)) for k in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        results["huge_uploads_peak_mib_above_idle"] = peak_mib(proc.pid) - idle
        for n in (1, 16):
            results[f"alone_{n}"] = predictions(url, blobs, n, args.requests)
        stop = threading.Event()
        counts = flood(url, blobs[0], args.flooders, stop)
        time.sleep(3)
        for n in (1, 16):
            results[f"flood_{n}"] = predictions(url, blobs, n, args.requests)
        stop.set()
        results["flood"] = counts
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(json.dumps(results, indent=1))
    for n in (1, 16):
        a, f = results[f"alone_{n}"], results[f"flood_{n}"]
        print(
            f"{n:>2} clients: p50 {a['p50_ms']:.0f} ms / p95 {a['p95_ms']:.0f} ms alone; "
            f"under the flood p50 {f['p50_ms']:.0f} / p95 {f['p95_ms']:.0f} ms "
            f"({f['p95_ms'] / a['p95_ms']:.2f}×), {f['errors']} refused"
        )
    print(f"flood: {results['flood']}")
    print(f"four 16-bit 7000×7000 uploads: +{results['huge_uploads_peak_mib_above_idle']:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

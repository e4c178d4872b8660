"""Benchmark: the public app under load — latency, throughput, errors and memory.

    .venv/bin/python -m bench.serve [--clients 1,8,32] [--requests 160] [--explain 3]
        [--json out.json]

Starts ``python -m gradio_app`` as a subprocess on a free localhost port, serving the run the
store names (``TBXRAY_RUNS_DIR`` / ``TBXRAY_DB_URL``), and sends it the served run's own test
images (real X-rays, cycled):
1. 10 predictions, then the server's resident memory (VmRSS);
2. for each N in ``--clients``: N concurrent clients, each a thread with its own connection,
   send ``--requests`` predictions in all through the HTTP API as a browser does (upload the
   file, call ``/predict``, read the server-sent result, which includes the Grad-CAM overlay);
   p50 / p95 latency per request, requests per second and errors;
3. more predictions from 8 clients, with the memory after 500, 750 and 1,000 in all;
4. one client through ``gradio_client`` (its own overhead included), and twice ``--explain``
   LIME and SHAP requests, with the memory after each round.
Prints a table and the load average; the figures in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def call(http: httpx.Client, api: str, data: bytes, name: str) -> tuple[float, list | None]:
    """One request as a browser makes it: upload, call, read the result. (seconds, outputs)."""
    start = time.perf_counter()
    files = {"files": (name, data, "image/png")}
    path = http.post("/gradio_api/upload", files=files).raise_for_status().json()[0]
    payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
    event = http.post(f"/gradio_api/call/{api}", json=payload).raise_for_status().json()
    stream = http.get(f"/gradio_api/call/{api}/{event['event_id']}").raise_for_status().text
    seconds = time.perf_counter() - start
    lines = stream.splitlines()
    if "event: complete" not in lines:
        return seconds, None
    return seconds, json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))


def load(url: str, blobs: list[bytes], clients: int, requests: int) -> dict:
    """``requests`` predictions from ``clients`` concurrent clients; latency, rate, errors."""
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    seconds, out = call(http, "predict", blobs[i % len(blobs)], f"{i}.png")
                except httpx.HTTPError as err:
                    with lock:
                        errors.append(repr(err))
                    continue
                with lock:
                    if out is None or out[0].get("verdict") is None:
                        errors.append(f"request {i}: no result")
                    else:
                        latencies.append(seconds)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return summary(latencies, errors, wall)


def summary(latencies: list[float], errors: list[str], wall: float) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "n": len(ms),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": statistics.median(ms) if ms else None,
        "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else None,
        "per_s": len(ms) / wall,
    }


def start_app(port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m gradio_app`` on ``port`` (its output in ``log``), once it answers."""
    cmd = [sys.executable, "-m", "gradio_app", "--port", str(port), "--no-examples"]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with status {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.terminate()
    raise SystemExit(f"the app did not answer within 300 s; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per phase")
    parser.add_argument("--requests", type=int, default=160, help="predictions per phase")
    parser.add_argument("--explain", type=int, default=3, help="LIME and SHAP requests each")
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
    blobs = [(data / p).read_bytes() for p in split["test"]]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"bench-serve-{port}.log"
    load_before = os.getloadavg()
    proc = start_app(port, log)
    results: dict = {"run": run.id, "size": run.config["data"]["image_size"], "phases": {}}
    memory = results["memory_mib"] = {}
    try:
        served = load(url, blobs, 1, 10)["n"]
        memory[served] = rss_mib(proc.pid)
        for n in (int(c) for c in args.clients.split(",")):
            results["phases"][n] = load(url, blobs, n, args.requests)
            served += args.requests
        for mark in (500, 750, 1000):
            if served < mark:
                load(url, blobs, 8, mark - served)
                served = mark
                memory[served] = rss_mib(proc.pid)
        results["gradio_client_1"] = gradio_client_phase(url, blobs, 30)
        for rounds in (1, 2):
            results[f"explain_{rounds}"] = explain_phase(url, blobs, args.explain)
            memory[f"after {rounds * args.explain} LIME + SHAP each"] = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    results["loadavg_before"] = load_before
    results["loadavg_after"] = os.getloadavg()
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def gradio_client_phase(url: str, blobs: list[bytes], n: int) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            path = Path(tmp) / f"{i}.png"
            path.write_bytes(blobs[i % len(blobs)])
            start = time.perf_counter()
            client.predict(handle_file(str(path)), api_name="/predict")
            latencies.append(time.perf_counter() - start)
    return summary(latencies, [], sum(latencies))


def explain_phase(url: str, blobs: list[bytes], n: int) -> dict:
    out = {}
    with httpx.Client(base_url=url, timeout=300) as http:
        for method in ("lime", "shap"):
            latencies, errors = [], []
            for i in range(n):
                seconds, result = call(http, method, blobs[i % len(blobs)], f"{i}.png")
                if result and result[0]:
                    latencies.append(seconds)
                else:
                    errors.append(f"{method} request {i}: no heatmap after {seconds:.1f} s")
            out[method] = summary(latencies, errors, sum(latencies) or 1.0)
    return out


def report(r: dict) -> None:
    table = Table(
        "clients", "requests", "errors", "p50 ms", "p95 ms", "requests/s",
        title=f"/predict (verdict + Grad-CAM), run {r['run']} at {r['size']} px",
    )  # fmt: skip
    rows = [(str(n), p) for n, p in r["phases"].items()]
    rows.append(("1 (gradio_client)", r["gradio_client_1"]))
    rows += [(f"1 ({m.upper()})", p) for m, p in r["explain_1"].items()]
    for name, p in rows:
        table.add_row(
            name,
            str(p["n"]),
            str(p["errors"]),
            f"{p['p50_ms']:.0f}" if p["p50_ms"] is not None else "-",
            f"{p['p95_ms']:.0f}" if p["p95_ms"] is not None else "-",
            f"{p['per_s']:.1f}",
        )
    console = Console()
    console.print(table)
    console.print(
        "app memory (RSS, MiB) after N predictions: "
        + ", ".join(f"{k}: {v:.0f}" for k, v in r["memory_mib"].items())
    )
    console.print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.2f}" for x in r["loadavg_before"])
        + "; after "
        + ", ".join(f"{x:.2f}" for x in r["loadavg_after"])
    )


if __name__ == "__main__":
    main()

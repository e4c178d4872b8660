"""Benchmark: the public app under hostile requests, case by case, with its memory and disk.

    .venv/bin/python -m bench.attack [--markdown BENCHMARKS.md] [--json out.json]

Starts ``python -m gradio_app`` (serving the run the store names, as ``bench.serve`` does) with
a temporary folder of its own, and replays the cases of issue 26 against it: oversized and
chunked bodies, many files in one request, one client's upload volume, huge DICOM and PNG
files at once, malformed calls, routes the app does not use, odd files. For each case it prints
the HTTP status, the app's sentence, the server's resident memory before and after and its peak
during the case (VmHWM, reset before each case through ``/proc/PID/clear_refs``), and the bytes
in the upload folder afterwards. Meanwhile a legitimate visitor asks for a verdict every 2.5 s
from an address of its own; the slowest answer it got is reported. Last, with an upload stored,
the server gets SIGTERM and the upload folder is checked one second later.

Targets: no 5xx anywhere; peak memory at most 300 MB above the case's start for one request
and 600 MB for four at once; the upload folder never above its budget; nothing of an upload on
disk 1 s after SIGTERM; the legitimate visitor always answered within 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from bench.generalisation import write_section
from bench.hostile import (
    MB,
    animated_gif,
    big_dicom,
    big_png,
    bomb_png,
    dicom_header_only,
    legit_image,
    multipart,
    raw_chunked,
    raw_length,
    strip_png,
    zeros,
)
from bench.serve import free_port, rss_mib, start_app

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


BUDGET_MB = 512  # the app's default upload budget


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def folder_bytes(tmp: Path) -> int:
    return sum(
        f.stat().st_size for f in tmp.glob("tbxray-uploads-*/**/*") if f.is_file() and f.exists()
    )


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)
    return json.dumps(body)[:200]


# A legitimate visitor's pace: 24 verdicts a minute, under the 30 a visitor may ask for.
PACE_S = 2.5


class Visitor(threading.Thread):
    """A legitimate visitor: a verdict every PACE_S seconds, from an address of its own."""

    def __init__(self, url: str, image: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.image = url, image
        self.stop = threading.Event()
        self.slowest, self.failures, self.answers = 0.0, [], 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                start = time.perf_counter()
                ok = predict(http, self.image, "10.8.0.1")
                took = time.perf_counter() - start
                self.slowest = max(self.slowest, took)
                self.answers += 1
                if not ok:
                    self.failures.append(time.strftime("%H:%M:%S"))
                self.stop.wait(max(0.0, PACE_S - took))


def said(http: httpx.Client, event: httpx.Response) -> str:
    """What a /predict call answered: its verdict, the reason and the notes."""
    if event.status_code != 200:
        return _error(event)
    text = http.get(f"/gradio_api/call/predict/{event.json()['event_id']}").text
    lines = text.splitlines()
    if "event: complete" not in lines:
        return text[:200]
    (result, *_) = json.loads(lines[lines.index("event: complete") + 1].removeprefix("data: "))
    return "; ".join([f"{result['verdict']}: {result['reason']}", *result.get("notes", [])])


def predict(http: httpx.Client, image: bytes, visitor: str, api: str = "predict") -> bool:
    headers = {"X-Forwarded-For": visitor}
    up = http.post("/gradio_api/upload", files={"files": ("x.png", image)}, headers=headers)
    if up.status_code != 200:
        return False
    event = http.post(
        f"/gradio_api/call/{api}", json={"data": [_file(up.json()[0])]}, headers=headers
    )
    if event.status_code != 200:
        return False
    text = http.get(f"/gradio_api/call/{api}/{event.json()['event_id']}", headers=headers).text
    return "event: complete" in text


def cases(url: str, port: int, tmp: Path) -> list[tuple[str, Callable[[httpx.Client], tuple]]]:
    """(name, function returning (status, sentence)) for each case."""

    def at_once(n: int, fn: Callable[[int], tuple]) -> tuple:
        out: list = [None] * n
        threads = [threading.Thread(target=lambda k=k: out.__setitem__(k, fn(k))) for k in range(n)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        statuses = sorted({o[0] for o in out}, key=str)
        return "/".join(map(str, statuses)), out[0][1]

    def upload_and_predict(image: bytes, k: int) -> tuple:
        with httpx.Client(base_url=url, timeout=300) as http:
            headers = {"X-Forwarded-For": f"10.3.0.{k}"}
            up = http.post("/gradio_api/upload", files={"files": ("x.dcm", image)}, headers=headers)
            if up.status_code != 200:
                return up.status_code, _error(up)
            event = http.post(
                "/gradio_api/call/predict", json={"data": [_file(up.json()[0])]}, headers=headers
            )
            return event.status_code, said(http, event)

    def upload(http: httpx.Client, files: list, visitor: str = "10.4.0.1") -> httpx.Response:
        return http.post(
            "/gradio_api/upload",
            files=[("files", f) for f in files],
            headers={"X-Forwarded-For": visitor},
        )

    def volume(http: httpx.Client) -> tuple:
        statuses = []
        for k in range(12):
            r = upload(http, [(f"{k}.png", os.urandom(15 * MB))], visitor="10.5.0.1")
            statuses.append(r.status_code)
        return f"{statuses.count(200)}×200, {statuses.count(429)}×429", _error(r)

    def slots(http: httpx.Client) -> tuple:
        codes = [
            http.post(
                "/gradio_api/call/v2/lime", json={}, headers={"X-Forwarded-For": f"10.6.0.{k % 12}"}
            ).status_code
            for k in range(24)
        ]
        ok = predict(http, legit, "10.6.1.1", api="lime")
        return f"{codes.count(422)}×422, then LIME {'200' if ok else 'refused'}", ""

    def each(http: httpx.Client, calls: list[tuple[str, dict]]) -> tuple:
        answers = [http.post(route, json=body) for route, body in calls]
        return "/".join(sorted({str(a.status_code) for a in answers})), _error(answers[-1])

    def recording(http: httpx.Client) -> tuple:
        answers = [
            http.post("/gradio_api/process_recording", files={"files": ("a.wav", os.urandom(MB))})
            for _ in range(40)
        ]
        return "/".join(sorted({str(a.status_code) for a in answers})), _error(answers[-1])

    def one(http: httpx.Client, image: bytes, name: str = "x.png") -> tuple:
        up = upload(http, [(name, image)], visitor="10.7.0.1")
        if up.status_code != 200:
            return up.status_code, _error(up)
        event = http.post("/gradio_api/call/predict", json={"data": [_file(up.json()[0])]})
        return event.status_code, said(http, event)

    def headers(http: httpx.Client) -> tuple:
        page = http.get("/", headers={"Origin": "http://localhost:1234"})
        cors = [h for h in page.headers if h.startswith("access-control-")]
        csp = page.headers.get("content-security-policy", "")
        return page.status_code, (
            f"server header: {page.headers.get('server', 'none')}; CORS headers: "
            f"{', '.join(cors) or 'none'}; script-src in CSP: {'script-src' in csp}"
        )

    from tests.dicom_files import dicom_bytes

    legit = legit_image()
    dicom = big_dicom()
    png = big_png()
    empty = dicom_header_only()
    crafted = dicom_bytes(np.zeros((64, 64), np.uint16)).replace(
        b"1.2.840.10008.1.2.1", b"[see](http://x)    "
    )
    fn_predict = 0  # fn_index of /predict: the first event the app defines
    nul = _file("/tmp/x\x00.png")
    return [
        (
            "1 chunked 500 MB multipart to /upload",
            lambda h: raw_chunked(
                port, "/gradio_api/upload", "multipart/form-data; boundary=x", multipart(500 * MB)
            )[:2],
        ),
        (
            "1 chunked 100 MB JSON to /call/predict",
            lambda h: raw_chunked(
                port, "/gradio_api/call/predict", "application/json", zeros(100 * MB)
            )[:2],
        ),
        ("1 500 MB upload with Content-Length", lambda h: raw_length(port, 500 * MB)),
        ("3 one POST of 40 × 15 MB files", lambda h: raw_length(port, 40 * 15 * MB)),
        (
            "3 one POST of 3 small files",
            lambda h: (lambda r: (r.status_code, _error(r)))(
                upload(h, [(f"{k}.png", legit) for k in range(3)])
            ),
        ),
        ("3 one client, 12 × 15 MB uploads", volume),
        ("4 DICOM RLE 7000×7000 16-bit, once", lambda h: upload_and_predict(dicom, 0)),
        (
            "4 the same DICOM, 4 at once",
            lambda h: at_once(4, lambda k: upload_and_predict(dicom, k)),
        ),
        (
            "4 the same as PNG, 4 at once",
            lambda h: at_once(4, lambda k: upload_and_predict(png, k)),
        ),
        ("5 24 malformed /call/v2/lime from 12 addresses", slots),
        (
            "6 /call/v2/{predict,lime,shap} missing or extra argument",
            lambda h: each(
                h,
                [
                    (f"/gradio_api/call/v2/{n}", b)
                    for n in ("predict", "lime", "shap")
                    for b in ({}, {"path": None, "extra": 1})
                ],
            ),
        ),
        (
            "6 NUL byte in a file path (/call, /call/v2, /queue/join)",
            lambda h: each(
                h,
                [
                    ("/gradio_api/call/predict", {"data": [nul]}),
                    ("/gradio_api/call/v2/predict", {"path": nul}),
                    (
                        "/gradio_api/queue/join",
                        {"data": [nul], "fn_index": fn_predict, "session_hash": "a"},
                    ),
                ],
            ),
        ),
        ("7 /process_recording, 40 × 1 MB", recording),
        (
            "8 GET /monitoring/summary",
            lambda h: (lambda r: (r.status_code, _error(r)))(h.get("/monitoring/summary")),
        ),
        (
            "9 upload over the size limit, disk nearly full",
            lambda h: (lambda r: (r.status_code, _error(r)))(
                upload(h, [("big.png", os.urandom(21 * MB))], visitor="10.7.0.2")
            ),
        ),
        ("9 DICOM with no image fields", lambda h: one(h, empty, "x.dcm")),
        (
            "9 path: 123 / an over-long file name",
            lambda h: each(
                h,
                [
                    ("/gradio_api/call/predict", {"data": [{"path": 123}]}),
                    ("/gradio_api/call/predict", {"data": [_file("/tmp/" + "x" * 5000)]}),
                ],
            ),
        ),
        ("9 PNG claiming 20000×20000", lambda h: one(h, bomb_png())),
        ("9 PNG 100000×8", lambda h: one(h, strip_png())),
        ("10 DICOM whose transfer syntax is Markdown", lambda h: one(h, crafted, "x.dcm")),
        ("11 animated GIF", lambda h: one(h, animated_gif(), "x.gif")),
        ("11 banner, CORS for a localhost origin, CSP", headers),
    ]


def measure(pid: int, tmp: Path, fn: Callable[[], tuple]) -> dict:
    """Run one case; its answer, the server's memory before / after / peak, and the folder."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = rss_mib(pid)
    most = [folder_bytes(tmp)]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            most.append(folder_bytes(tmp))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        status, sentence = fn()
    except (httpx.HTTPError, OSError) as err:
        status, sentence = None, f"{type(err).__name__}: {err}"
    done.set()
    watcher.join()
    time.sleep(0.5)
    return {
        "status": status,
        "message": sentence,
        "rss_before": before,
        "rss_after": rss_mib(pid),
        "rss_peak": peak_mib(pid),
        "folder_mib": folder_bytes(tmp) / MB,
        "folder_most_mib": max(most) / MB,
    }


def sigterm(proc, url: str, tmp: Path) -> dict:
    from tests.dicom_files import dicom_bytes

    named = dicom_bytes(np.full((256, 256), 900, np.uint16), PatientName="Doe^Jane")
    up = httpx.post(url + "/gradio_api/upload", files={"files": ("x.dcm", named)}, timeout=60)
    stored = folder_bytes(tmp)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    left = folder_bytes(tmp) + sum(1 for _ in tmp.glob("tbxray-uploads-*"))
    code = proc.wait(timeout=60)
    return {
        "status": up.status_code,
        "message": f"exit status {code}; {stored} bytes stored before, {left} bytes or folders "
        "left 1 s after SIGTERM",
        "left": left,
    }


def markdown(rows: list[dict], visitor: Visitor, stop: dict, date: str) -> list[str]:
    lines = [
        "## Public app under hostile requests (`bench/attack.py`, issue 26)",
        "",
        "Command: `.venv/bin/python -m bench.attack --markdown BENCHMARKS.md`, "
        f"{date}, 2-core CPU. Memory in MiB of the app's process (peak: VmHWM since the case "
        "began); the upload folder in MiB after the case (and its most during it).",
        "",
        "| case | status | message | RSS before | after | peak | upload folder |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        message = str(r["message"]).replace("|", "\\|").replace("\n", " ")
        message = message if len(message) <= 140 else message[:137] + "…"
        lines.append(
            f"| {r['case']} | {r['status']} | {message} | {r['rss_before']:.0f} | "
            f"{r['rss_after']:.0f} | {r['rss_peak']:.0f} | {r['folder_mib']:.1f} "
            f"({r['folder_most_mib']:.1f}) |"
        )
    lines.append(
        f"| 2 SIGTERM with a DICOM upload stored | {stop['status']} | {stop['message']} | | | | |"
    )
    lines += [
        "",
        f"A legitimate visitor asked for a verdict every {PACE_S:g} s throughout: "
        f"{visitor.answers} "
        f"answers, {len(visitor.failures)} refused or failed, the slowest in "
        f"{visitor.slowest:.2f} s.",
    ]
    growth = {r["case"]: r["rss_peak"] - r["rss_before"] for r in rows}
    together = max(v for k, v in growth.items() if "at once" in k)
    alone = max(v for k, v in growth.items() if "at once" not in k)
    fives = [r["case"] for r in rows if str(r["status"]).startswith("5")]
    lines += [
        "",
        f"Targets: no 5xx ({len(fives)} cases answered 5xx); peak growth {alone:.0f} MiB for one "
        f"request (≤ 300) and {together:.0f} MiB for four at once (≤ 600); the upload folder "
        f"at most {max(r['folder_most_mib'] for r in rows):.0f} MiB (budget {BUDGET_MB}); "
        f"{stop['left']} bytes of uploads left 1 s after SIGTERM; the legitimate visitor's "
        f"slowest answer {visitor.slowest:.2f} s (≤ 2).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="replace this section of the file (BENCHMARKS.md)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    from db import RunStore

    if RunStore().served_run() is None:
        raise SystemExit(
            "the store serves no run: promote one first (python -m pipeline promote RUN)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="bench-attack-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_app(port, tmp / "app.log", env={**os.environ, "TMPDIR": str(tmp)})
    rows: list[dict] = []
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            visitor = Visitor(url, legit_image())
            visitor.start()
            for name, fn in cases(url, port, tmp):
                row = {"case": name, **measure(proc.pid, tmp, lambda fn=fn: fn(http))}
                rows.append(row)
                print(
                    f"{name}: {row['status']} | {str(row['message'])[:100]} | RSS "
                    f"{row['rss_before']:.0f} → {row['rss_after']:.0f} (peak "
                    f"{row['rss_peak']:.0f}) | folder {row['folder_mib']:.1f} MiB",
                    flush=True,
                )
            visitor.stop.set()
            visitor.join()
        stop = sigterm(proc, url, tmp)
        print(f"SIGTERM: {stop['message']}")
    finally:
        if proc.poll() is None:
            proc.kill()
    print(
        f"legitimate visitor: {visitor.answers} answers, {len(visitor.failures)} failed, "
        f"slowest {visitor.slowest:.2f} s"
    )
    fives = [r["case"] for r in rows if str(r["status"]).startswith("5")]
    print(f"5xx: {fives or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "sigterm": stop}, indent=1))
    lines = markdown(rows, visitor, stop, time.strftime("%Y-%m-%d"))
    print(write_section("attack", lines, args.markdown))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m pipeline up``: the dashboard, the public app and a worker, together.

Each service runs as its own process (the Procfile's ``web``, ``public`` and ``worker``) on the
same run store; this module starts them, prints where they listen, and stops them all on Ctrl-C
or as soon as one of them exits. It is what ``make demo`` ends with.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Service:
    """A named command line, and where a user finds it (empty for the worker)."""

    name: str
    argv: list[str]
    url: str = ""


def services(
    dashboard_port: int = 8501, public_port: int = 7860, worker: bool = True
) -> list[Service]:
    """The commands that bring the lab up on localhost."""
    py = sys.executable
    out = [
        Service(
            "dashboard",
            [py, "-m", "dashboard", "--address", "127.0.0.1", "--port", str(dashboard_port)],
            f"http://127.0.0.1:{dashboard_port}",
        ),
        Service(
            "public app",
            [py, "-m", "gradio_app", "--host", "127.0.0.1", "--port", str(public_port)],
            f"http://127.0.0.1:{public_port}",
        ),
    ]
    if worker:
        out.append(Service("worker", [py, "-m", "pipeline", "worker"]))
    return out


class PortTakenError(ValueError):
    """A service's port is already in use; the message says which and how to choose another."""


def check_ports(to_start: list[Service]) -> None:
    """Refuse to start anything when a service's port is taken (a dashboard already running, or
    another program): otherwise the others start, that one dies, and all are stopped again."""
    for service, option, variable in (
        ("dashboard", "--dashboard-port", "DASHBOARD_PORT"),
        ("public app", "--public-port", "PUBLIC_PORT"),
    ):
        found = next((s for s in to_start if s.name == service), None)
        if found is None:
            continue
        port = int(found.argv[found.argv.index("--port") + 1])
        with socket.socket() as probe:
            # As the servers do: a port left in TIME_WAIT by a lab just stopped is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise PortTakenError(
                    f"port {port} for the {service} is already in use (is the lab already "
                    f"running?): stop what uses it, or choose another port with {option} N "
                    f"(make demo {variable}=N)"
                ) from None


def up(to_start: list[Service], poll_s: float = 1.0) -> int:
    """Start every service, wait until one exits or Ctrl-C, then stop the others.

    Returns 0 after Ctrl-C or SIGTERM, else the exit status of the service that stopped first.
    """
    check_ports(to_start)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running: list[tuple[Service, subprocess.Popen[bytes]]] = []
    # Ctrl-C (even where a shell started us with SIGINT ignored) and a process manager's SIGTERM
    # both stop everything: the services run in their own sessions and hear only from us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for service in to_start:
            # Each in its own session: a Ctrl-C in the terminal reaches only this process, which
            # then stops every service exactly once (a second SIGINT makes some print tracebacks).
            proc = subprocess.Popen(service.argv, cwd=ROOT, env=env, start_new_session=True)
            running.append((service, proc))
        for service, _ in running:
            where = f" at {service.url}" if service.url else ""
            print(f"started {service.name}{where}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while True:
            for service, proc in running:
                code = proc.poll()
                if code is not None:
                    print(f"{service.name} exited with status {code}; stopping the rest")
                    return code or 1
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return 0
    finally:
        for _, proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc in running:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

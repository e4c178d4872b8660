"""A throwaway PostgreSQL server for the tests and the queue benchmark.

``with throwaway_postgres() as url:`` makes a cluster with initdb in a temporary folder, starts
it with pg_ctl on 127.0.0.1 (a free port, trust authentication, fsync off), yields its base URL
(``postgresql+psycopg://postgres@127.0.0.1:PORT``; add ``/postgres`` or a database name) and
stops and deletes it afterwards. PostgreSQL refuses to run as root: as root the cluster belongs
to the ``postgres`` user that Debian's package makes, else to ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):  # noqa: N818 - reads as the condition it reports
    """The server programs are missing, or the cluster could not be made or started."""


def server_program(name: str) -> str | None:
    """initdb / pg_ctl: on PATH, else Debian's newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(versions[-1]) if versions else None


def _user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root with neither a 'postgres' nor a 'nobody' user")


@contextmanager
def throwaway_postgres(max_connections: int = 200) -> Iterator[str]:
    """Start a temporary PostgreSQL cluster; yields its base URL (see module docstring)."""
    initdb, pg_ctl = server_program("initdb"), server_program("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresUnavailable(
            "PostgreSQL server programs (initdb, pg_ctl) are not installed "
            "(`make test` installs Debian's postgresql)"
        )
    user = _user()
    # Not under pytest's tmp_path: its parents are private to root, and the server's user must
    # reach this folder.
    folder = Path(tempfile.mkdtemp(prefix="tbxray-postgres-"))
    data = folder / "data"
    if user is not None:
        shutil.chown(folder, user)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=user, capture_output=True, text=True, cwd=folder)

    try:
        made = run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        if made.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {made.stderr.strip()[-300:]}")
        options = f"-h 127.0.0.1 -p {port} -k {folder} -F -c max_connections={max_connections}"
        log = folder / "log"
        started = run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        if started.returncode != 0:
            text = log.read_text() if log.exists() else started.stderr
            raise PostgresUnavailable(f"PostgreSQL did not start: {text.strip()[-300:]}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

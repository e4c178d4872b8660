"""``python -m dashboard [--address A] [--port P]``: start the dashboard, refusing a
non-loopback address unless a login is configured (see :mod:`dashboard.auth`)."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from dashboard import auth

APP = Path(__file__).resolve().parent / "app.py"


def _oidc_in(secrets: Path) -> bool:
    """Whether the secrets file has the ``[auth]`` section ``st.login`` reads."""
    if not secrets.is_file():
        return False
    with secrets.open("rb") as f:
        return "auth" in tomllib.load(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    secured = auth.password_hash() is not None or _oidc_in(Path(".streamlit/secrets.toml"))
    if not auth.is_loopback(args.address) and not secured:
        print("error: " + auth.REFUSAL.format(address=args.address), file=sys.stderr)
        return 2
    os.execv(sys.executable, streamlit_command(args.address, args.port))
    return 0


def streamlit_command(address: str, port: int) -> list[str]:
    """The command that serves the dashboard on ``address:port``, headless, without telemetry."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


if __name__ == "__main__":
    sys.exit(main())

"""``python -m dashboard [--address A] [--port P]``: start the dashboard, refusing a
non-loopback address unless a login is configured (see :mod:`dashboard.auth`).

``python -m dashboard password``: make the hash of a shared team password for that login."""

from __future__ import annotations

import argparse
import getpass
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
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["password"]:
        argparse.ArgumentParser(
            prog="python -m dashboard password",
            description="Make the hash of a shared team password for a dashboard on a network "
            f"(set it as {auth.PASSWORD_ENV}; the password itself is not stored).",
        ).parse_args(args[1:])
        return make_password()
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8501)
    opts = parser.parse_args(args)
    secured = auth.password_hash() is not None or _oidc_in(Path(".streamlit/secrets.toml"))
    if not auth.is_loopback(opts.address) and not secured:
        print("error: " + auth.REFUSAL.format(address=opts.address), file=sys.stderr)
        return 2
    os.execv(sys.executable, streamlit_command(opts.address, opts.port))
    return 0


def make_password() -> int:
    """Ask for the team password twice and print the line that sets its hash."""
    first = getpass.getpass("Team password for the dashboard: ")
    if len(first) < 10:
        print("error: choose a password of at least 10 characters", file=sys.stderr)
        return 2
    if getpass.getpass("Again: ") != first:
        print("error: the two passwords differ; nothing was made", file=sys.stderr)
        return 2
    print(
        "Set this in the dashboard's environment (the password itself is not stored):\n"
        f"export {auth.PASSWORD_ENV}='{auth.hash_password(first)}'"
    )
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

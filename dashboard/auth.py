"""Who may use the dashboard: anyone on this machine, or, when it is reachable from others, only
people who log in.

The dashboard launches training and publishes models to the public app, so it must never be open
to a network without a login. Two ways to configure one:

- **OIDC** (Streamlit's built-in ``st.login``): an ``[auth]`` section in
  ``.streamlit/secrets.toml`` with ``redirect_uri``, ``cookie_secret``, ``client_id``,
  ``client_secret`` and ``server_metadata_url`` of your identity provider (see the README).
- **A shared password**, where there is no identity provider: its scrypt hash in the environment
  variable :data:`PASSWORD_ENV` (make one with ``python -m dashboard password``); the
  password itself is never stored.

Without either, :func:`gate` serves only a loopback address (127.0.0.1, ::1, localhost) and
refuses every other, saying how to configure a login; ``python -m dashboard`` refuses to start.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets

PASSWORD_ENV = "TBXRAY_DASHBOARD_PASSWORD_HASH"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
LOOPBACK_NAMES = frozenset({"localhost"})


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<key hex>`` for :data:`PASSWORD_ENV`."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${key.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` value), in constant
    time; a malformed ``stored`` value never matches."""
    try:
        kind, salt, key = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = bytes.fromhex(key)
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def is_loopback(address: str | None) -> bool:
    """Whether a server address is reachable from this machine only (None or "" mean every
    interface, which is not)."""
    if not address:
        return False
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def password_hash() -> str | None:
    """The configured password hash, or None."""
    value = os.environ.get(PASSWORD_ENV, "").strip()
    return value or None


def oidc_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` has an ``[auth]`` section for ``st.login``."""
    import streamlit as st
    from streamlit.errors import StreamlitSecretNotFoundError

    try:
        return "auth" in st.secrets
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return False


REFUSAL = (
    "This dashboard is reachable from other machines ({address}) and no login is configured, so "
    "it shows nothing: it can launch training and publish models to the public app. Configure a "
    "login — OIDC in .streamlit/secrets.toml, or a shared password: run `python -m dashboard "
    f"password` and set {PASSWORD_ENV} — or serve it on 127.0.0.1 only."
)


def gate() -> None:
    """Stop the page unless the visitor may see it (see the module docstring)."""
    import streamlit as st

    address = st.get_option("server.address")
    if oidc_configured():
        if not st.user.is_logged_in:
            st.title("TB X-ray Lab")
            st.button("Log in", on_click=st.login, type="primary", key="auth.login")
            st.stop()
        with st.sidebar:
            st.caption(f"Signed in as {st.user.get('email') or st.user.get('name')}")
            st.button("Log out", on_click=st.logout, key="auth.logout")
        return
    stored = password_hash()
    if stored is not None:
        if st.session_state.get("auth.ok"):
            return
        st.title("TB X-ray Lab")
        with st.form("auth.form"):
            given = st.text_input("Team password", type="password", key="auth.password")
            sent = st.form_submit_button("Enter", type="primary")
        if sent and check_password(given, stored):
            st.session_state["auth.ok"] = True
            st.rerun()
        if sent:
            st.error("That password is not the team's. Ask whoever runs the dashboard.")
        st.stop()
    if not is_loopback(address):
        st.error(REFUSAL.format(address=address or "every network interface"))
        st.stop()

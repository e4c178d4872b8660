"""The dashboard is not public: on a network it shows nothing until someone logs in."""

from __future__ import annotations

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from dashboard import auth
from dashboard.__main__ import main as start
from tests.pages import APP

SECRET = "correct horse battery"


@pytest.fixture(autouse=True)
def loopback_after():
    """Every other page test runs on the loopback address (tests/conftest.py)."""
    yield
    config.set_option("server.address", "127.0.0.1")


def run(monkeypatch: pytest.MonkeyPatch, address: str, password_hash: str | None) -> AppTest:
    config.set_option("server.address", address)
    if password_hash is None:
        monkeypatch.delenv(auth.PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(auth.PASSWORD_ENV, password_hash)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_a_password_hash_checks_the_password_and_nothing_else():
    stored = auth.hash_password(SECRET)
    assert SECRET not in stored
    assert auth.check_password(SECRET, stored)
    assert not auth.check_password("correct horse", stored)
    assert not auth.check_password(SECRET, "scrypt$zz$zz")  # malformed: never a match
    assert auth.hash_password(SECRET) != stored  # salted


def test_without_a_login_a_network_address_is_refused_and_loopback_served(monkeypatch, capsys):
    assert start(["--address", "0.0.0.0"]) == 2
    assert "no login is configured" in capsys.readouterr().err
    refused = run(monkeypatch, "0.0.0.0", None)
    assert "no login is configured" in refused.error[0].value
    assert "Leaderboard" not in titles(refused)
    assert "Leaderboard" in titles(run(monkeypatch, "127.0.0.1", None))


def test_the_password_mode_lets_in_only_the_team(monkeypatch):
    at = run(monkeypatch, "0.0.0.0", auth.hash_password(SECRET))
    assert "Leaderboard" not in titles(at)
    at.text_input(key="auth.password").input("guess")
    at.button[0].click().run()
    assert "not the team's" in at.error[0].value
    assert "Leaderboard" not in titles(at)
    at.text_input(key="auth.password").input(SECRET)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "Leaderboard" in titles(at)


def test_python_m_dashboard_password_prints_a_hash_that_checks(monkeypatch, capsys):
    answers = iter([SECRET, SECRET])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert start(["password"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"export {auth.PASSWORD_ENV}='")
    stored = line.split("'")[1]
    assert auth.check_password(SECRET, stored)
    assert not auth.check_password("wrong password", stored)


@pytest.mark.parametrize(
    ("first", "again", "says"),
    [("short", "short", "at least 10 characters"), (SECRET, SECRET + "!", "differ")],
)
def test_a_bad_team_password_is_refused_with_the_reason(monkeypatch, capsys, first, again, says):
    answers = iter([first, again])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert start(["password"]) == 2
    out = capsys.readouterr()
    assert says in out.err
    assert "export" not in out.out

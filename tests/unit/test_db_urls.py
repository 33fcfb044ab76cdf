"""Database URLs: every malformed one is a one-line DatabaseURLError, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cjlib.db import is_memory_database, parse_database_url, safe_url
from cjlib.errors import DatabaseURLError


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+psycopg://u@h:notaport/db", "invalid port 'notaport'"),
        ("postgresql+psycopg://u@h:0/db", "invalid port '0'"),
        ("postgresql+psycopg://u@h:65536/db", "invalid port '65536'"),
        ("postgresql+psycopg://u@[::1/db", "invalid host"),
        ("not a url", "cannot parse database URL 'not a url'"),
        ("", "the database URL is empty"),
        ("   ", "the database URL is empty"),
    ],
)
def test_malformed_urls_are_one_line_errors(url, fragment):
    with pytest.raises(DatabaseURLError) as refused:
        parse_database_url(url)
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_empty_url_does_not_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("CJ_DATABASE_URL", "sqlite:////tmp/elsewhere.sqlite3")
    with pytest.raises(DatabaseURLError, match="empty"):
        parse_database_url("")
    assert parse_database_url(None).database == "/tmp/elsewhere.sqlite3"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://cj:s3cret@h:notaport/db",
        "postgresql+psycopg://cj:s3/cret@h:notaport/db",
        "postgresql+psycopg://cj:s3cret@[::1/db",
    ],
)
def test_passwords_are_masked_even_in_urls_that_do_not_parse(url):
    with pytest.raises(DatabaseURLError) as refused:
        parse_database_url(url)
    assert "s3" not in str(refused.value) and "cj:***@" in str(refused.value)
    assert "s3" not in safe_url(url)


def test_tilde_is_expanded_in_the_url_itself(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    parsed = parse_database_url("sqlite:///~/cj/x.sqlite3")
    assert Path(parsed.database) == tmp_path / "cj" / "x.sqlite3"


@pytest.mark.parametrize(
    ("url", "memory"),
    [
        ("sqlite://", True),
        ("sqlite:///", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///file::memory:?uri=true", True),
        ("sqlite:///data/cj.sqlite3", False),
        ("postgresql+psycopg://u@localhost/cj", False),
    ],
)
def test_in_memory_databases_are_recognised(url, memory):
    assert is_memory_database(parse_database_url(url)) is memory

"""`cj db …`: builds the schema on both databases; unusable URLs give one line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import inspect

from cjlib.cli.main import main
from cjlib.db import get_engine, head_revision
from tests.conftest import BACKENDS


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_db_upgrade_builds_schema_and_current_reports_head(empty_db_url, capsys):
    assert main(["db", "upgrade", "--database-url", empty_db_url]) == 0
    engine = get_engine(empty_db_url)
    assert "cj_batch_uploads" in inspect(engine).get_table_names()
    engine.dispose()
    assert main(["db", "current", "--database-url", empty_db_url]) == 0
    out = capsys.readouterr().out
    assert f"is at {head_revision()} (up to date)" in out


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "cannot parse database URL"),
        ("nosuchdb://x", "unsupported database URL"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "cannot connect to"),
        ("postgresql+psycopg://postgres:secret@127.0.0.1:1/x", "cannot connect to"),
    ],
)
def test_unusable_url_gives_one_line_and_exit_2(url, fragment):
    proc = subprocess.run(
        [sys.executable, "-m", "cjlib.cli", "db", "upgrade", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in proc.stderr
    assert "secret" not in proc.stderr


def test_environment_variable_is_used_when_no_option(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'env.sqlite3'}"
    monkeypatch.setenv("CJ_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert str(tmp_path / "env.sqlite3") in capsys.readouterr().out


def test_default_is_embedded_sqlite_under_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CJ_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "data" / "cj.sqlite3").is_file()


@pytest.mark.parametrize(
    "command",
    [
        ["health"],
        ["batch", "inspect", "1"],
        ["anchors", "verify", "--assignment-id", "a"],
        ["batch", "execute", "--assignment-id", "a", "--course-id", "c", "--batch-id", "x",
         "--max-comparisons", "5"],
    ],
)  # fmt: skip
def test_commands_on_an_unmigrated_database_say_to_upgrade(tmp_path, capsys, command):
    url = f"sqlite:///{tmp_path / 'blank.sqlite3'}"
    assert main([*command, "--database-url", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `cj db upgrade" in err[0]
    engine = get_engine(url)
    assert inspect(engine).get_table_names() == []  # nothing was written
    engine.dispose()


def test_sqlite_folder_that_cannot_be_created_is_one_line_exit_2(capsys):
    assert main(["db", "upgrade", "--database-url", "sqlite:////proc/no-such/cj.sqlite3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the folder /proc/no-such" in err[0]


@pytest.mark.parametrize("batch_id", ["0", "99999999999999999999"])
def test_out_of_range_batch_id_is_a_usage_error_not_a_traceback(batch_id, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ids.sqlite3'}"
    main(["db", "upgrade", "--database-url", url])
    for command in (["batch", "inspect"], ["batch", "cleanup"]):
        assert main([*command, batch_id, "--database-url", url]) == 2
        assert "Invalid value for 'CJ_BATCH_ID'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["batch", "cleanup", "1"], ["db", "reset", "--yes"]])
def test_destructive_commands_with_an_unparsable_url_say_so_in_one_line(command, capsys):
    assert main([*command, "--database-url", "not a url"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot parse database URL 'not a url'" in err[0]

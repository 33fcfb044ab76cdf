"""The issue's checklist from the CLI on a fresh database, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from cjlib.cli.main import main
from tests.conftest import BACKENDS
from tests.integration.workflow_helpers import count, small_dataset, transitions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("cli"), n_students=12)


@pytest.mark.parametrize("empty_db_url", BACKENDS, indirect=True)
def test_checklist_runs_from_the_cli_on_a_fresh_database(empty_db_url, dataset, tmp_path, capsys):
    url = ["--database-url", empty_db_url]
    ids = ["--assignment-id", "eng5-cli", "--course-id", "ENG5"]
    assert main(["db", "upgrade", *url]) == 0
    assert main(["anchors", "register", *ids, "--dataset", str(dataset), *url]) == 0
    assert main(["anchors", "verify", "--assignment-id", "eng5-cli", "--expect", "12", *url]) == 0
    capsys.readouterr()
    code = main(
        [
            "batch", "execute", *ids, "--batch-id", "cli-run", "--max-comparisons", "60",
            "--await-completion", "--completion-timeout", "300", "--seed", "11",
            "--dataset", str(dataset), "--output-dir", str(tmp_path / "runs"), "--json", *url,
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["state"]) == ("COMPLETE_STABLE", "COMPLETED")
    assert summary["anchors"] == 12 and summary["grade_projections"] == 12
    assert summary["comparisons"]["completed"] + summary["comparisons"]["failed"] == 60
    from cjlib.db import get_engine

    engine = get_engine(empty_db_url)
    assert transitions(engine, summary["cj_batch_id"])[-3:] == [
        "WAITING_CALLBACKS",
        "SCORING",
        "COMPLETED",
    ]
    assert count(engine, "grade_projections") == 12
    engine.dispose()
    assert main(["health", *url]) == 0
    assert main(["batch", "inspect", str(summary["cj_batch_id"]), "--json", *url]) == 0


def test_verify_with_wrong_count_exits_nonzero_saying_why(tmp_path, dataset, capsys):
    url = ["--database-url", f"sqlite:///{tmp_path / 'v.sqlite3'}"]
    main(["db", "upgrade", *url])
    main(["anchors", "register", "--assignment-id", "a", "--course-id", "C",
          "--dataset", str(dataset), *url])  # fmt: skip
    capsys.readouterr()
    assert main(["anchors", "verify", "--assignment-id", "a", "--expect", "13", *url]) == 1
    assert "expected 13 anchors, found 12" in capsys.readouterr().err


def test_execute_without_anchors_is_refused_with_exit_2(tmp_path, dataset, capsys):
    url = ["--database-url", f"sqlite:///{tmp_path / 'r.sqlite3'}"]
    main(["db", "upgrade", *url])
    capsys.readouterr()
    code = main(
        ["batch", "execute", "--assignment-id", "none", "--course-id", "C", "--batch-id", "x",
         "--max-comparisons", "10", "--dataset", str(dataset), *url]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no assessment instructions" in err[0]

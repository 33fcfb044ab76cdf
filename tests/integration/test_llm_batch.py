"""ENG5 batches judged by an LLM over a real local HTTP server, end to end.

The packaged ENG5 sample runs with ``--judge llm`` against :mod:`cjlib.testing.llm_server`
(the server decides from the data set's truth, keyed by essay text): with 429s and 500s
injected every pair is answered exactly once and broken answers are failed comparisons; the
API key (a random marker) appears in no output; a SIGKILLed run resumes without re-sending an
answered pair; ``--both-orders`` mirrors each pair and the report measures position bias;
a replay reproduces a batch with the server stopped; ``--max-cost-usd`` stops submitting;
a rejected key stops the run in one line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from cjlib.cli.main import main
from cjlib.datasets import load_dataset
from cjlib.db import get_engine, session_scope, upgrade
from cjlib.db.judge_calls import judge_call_summary, judge_calls_frame
from cjlib.db.models import Base
from cjlib.errors import UsageError
from cjlib.llm.orders import order_agreement
from cjlib.llm.settings import LLMConfig
from cjlib.package_data import sample_dataset_dir
from cjlib.pipeline import REPORT_HTML, execute_notebook, export_report
from cjlib.testing.llm_server import BROKEN_KINDS, Faults, running_llm_server, text_key
from cjlib.workflow import execute_batch, register_anchors
from cjlib.workflow.execute import _resume_judge, resume_batch
from tests.integration.workflow_helpers import as_dict, count, rows

KEY = f"sk-cjtest-{uuid.uuid4().hex}"
ASSIGNMENT = "eng5-np-2016"
IDS = ["--assignment-id", ASSIGNMENT, "--course-id", "ENG5"]
DATA = sample_dataset_dir()
#: Budget of the fault-injection batch: 24 students + 12 anchors, 10 comparisons each.
BUDGET = 180


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    """Essay id → text of the packaged sample (students and anchors)."""
    data = load_dataset(DATA)
    return {
        **dict(zip(data.students["essay_id"].astype(str), data.students["text"], strict=True)),
        **dict(zip(data.anchors["label"].astype(str), data.anchors["text"], strict=True)),
    }


@pytest.fixture(scope="module")
def truth_by_text(texts) -> dict[str, float]:
    truth = load_dataset(DATA).truth
    ability = dict(zip(truth["essay_id"].astype(str), truth["ability"], strict=True))
    return {text: float(ability[essay]) for essay, text in texts.items()}


@pytest.fixture
def llm_env(monkeypatch):
    monkeypatch.setenv("CJ_LLM_API_KEY", KEY)
    monkeypatch.delenv("CJ_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CJ_LLM_MODEL", raising=False)


@pytest.fixture
def short_backoff(monkeypatch):
    """Backoff from 10 ms instead of 1 s before retrying a 500 (the 429s say wait 0 s).

    Here the retries are counted; how long they wait is unit-tested (test_llm_judge.py). At
    1 s the waits were most of this test's 16 s.
    """
    policy = LLMConfig.retry_policy

    def short(self):
        return dataclasses.replace(policy(self), base_s=0.01)

    monkeypatch.setattr(LLMConfig, "retry_policy", short)


def _registered(url: str):
    engine = get_engine(url)
    register_anchors(engine, assignment_id=ASSIGNMENT, course_id="ENG5", dataset=DATA)
    return engine


def _sqlite(tmp_path: Path, name: str = "cj") -> tuple[str, object]:
    url = f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
    engine = get_engine(url)
    upgrade(engine)
    engine.dispose()
    return url, _registered(url)


def _execute_args(
    url: str, label: str, budget: int, out: Path, *extra: str, data: Path = DATA
) -> list[str]:
    return [
        "batch", "execute", *IDS, "--batch-id", label, "--max-comparisons", str(budget),
        "--dataset", str(data), "--output-dir", str(out), "--json", "--database-url", url,
        *extra,
    ]  # fmt: skip


def _small_dataset(folder: Path, n_students: int = 24) -> Path:
    """The sample with its first ``n_students`` students: 10 comparisons per essay stay cheap.

    Projection needs about 10 comparisons per essay (fewer is refused as too little
    information), which on the full 132-essay sample would take 660 LLM calls.
    """
    shutil.copytree(DATA, folder)
    students = pd.read_csv(folder / "students.csv").head(n_students)
    students.to_csv(folder / "students.csv", index=False)
    truth = pd.read_csv(folder / "truth.csv")
    keep = truth["is_anchor"].astype(bool) | truth["essay_id"].isin(students["essay_id"])
    truth.loc[keep].to_csv(folder / "truth.csv", index=False)
    return folder


def _db_dump(engine) -> str:
    lines = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            lines += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(lines)


def _assert_no_key(engine, folders=(), texts=(), must_contain: str | None = None) -> None:
    """The key (or its random part) is in no table, no file under ``folders``, no text."""
    dump = _db_dump(engine)
    if must_contain is not None:  # the dump really holds the run's LLM record
        assert must_contain in dump
    secret = KEY.split("-")[-1]
    assert secret not in dump
    files = [f for folder in folders for f in Path(folder).rglob("*") if f.is_file()]
    assert files or not folders
    for file in files:
        assert secret.encode() not in file.read_bytes(), file
    for text in texts:
        assert secret not in text


def _pairs(engine, batch_id: int) -> list:
    return rows(
        engine,
        "SELECT id, request_correlation_id AS cid, essay_a_els_id AS a, essay_b_els_id AS b, "
        "winner, confidence, error_code, processing_metadata AS meta "
        "FROM cj_comparison_pairs WHERE cj_batch_id = :b ORDER BY id",
        b=batch_id,
    )


def _calls(engine, batch_id: int) -> list:
    return rows(
        engine,
        "SELECT request_correlation_id AS cid, attempts, http_status, error_code, winner "
        "FROM cj_judge_calls WHERE cj_batch_id = :b ORDER BY id",
        b=batch_id,
    )


def _text_pair(texts, pair) -> tuple[str, str]:
    return text_key(texts[pair.a]), text_key(texts[pair.b])


# --------------------------------------------------------------------------------------------


def test_llm_batch_with_429s_and_500s_completes_and_leaks_no_key(
    db_url, llm_env, short_backoff, texts, truth_by_text, tmp_path, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    engine = _registered(db_url)
    faults = Faults(
        rate_429=0.10, retry_after_s=0, rate_500=0.05, rate_malformed=0.04,
        rate_invalid_winner=0.03, rate_fenced=0.05,
    )  # fmt: skip
    with running_llm_server(truth_by_text, faults=faults, seed=5) as server:
        args = _execute_args(
            db_url, "llm-run", BUDGET, tmp_path / "runs", "--judge", "llm",
            "--llm-base-url", server.base_url, "--llm-model", "gpt-4o-mini",
            "--concurrency", "8", "--await-completion", "--completion-timeout", "120",
            data=_small_dataset(tmp_path / "data"),
        )  # fmt: skip
        code = main(args)
        first = capsys.readouterr()
        assert code == 0, first.err
        summary = json.loads(first.out)
        base_url = server.base_url
    batch_id = summary["cj_batch_id"]
    assert (summary["state"], summary["completion_reason"]) == ("COMPLETED", "budget_exhausted")
    assert summary["grade_projections"] == 24

    pairs, calls = _pairs(engine, batch_id), _calls(engine, batch_id)
    assert len(pairs) == BUDGET
    # One stored call per pair, linked by correlation id.
    assert Counter(c.cid for c in calls) == Counter(p.cid for p in pairs)
    # The server answered (200) every pair exactly once; 429/500 were retried, not re-decided.
    kinds = server.answer_kinds()
    assert sorted(len(kinds.get(_text_pair(texts, p), [])) for p in pairs) == [1] * BUDGET
    assert sum(server.answers_by_pair().values()) == BUDGET
    broken = 0
    for pair in pairs:
        kind = kinds[_text_pair(texts, pair)][0]
        if kind in BROKEN_KINDS:
            broken += 1
            assert (pair.winner, pair.error_code) == ("error", "invalid_response"), kind
        else:
            assert pair.winner in ("essay_a", "essay_b") and pair.error_code is None, kind
            assert 1 <= pair.confidence <= 5
    assert broken > 0 and summary["comparisons"]["failed"] == broken

    transport_faults = [s for s in server.log if s.status in (429, 500)]
    assert len(transport_faults) > 0
    assert sum(c.attempts - 1 for c in calls) == len(transport_faults)

    # cj batch inspect: calls, retries, tokens, cost.
    assert main(["batch", "inspect", str(batch_id), "--json", "--database-url", db_url]) == 0
    inspected = capsys.readouterr()
    llm = json.loads(inspected.out)["judge_calls"]
    with session_scope(engine) as session:
        stored = judge_call_summary(session, batch_id)
    assert llm["calls"] == BUDGET and llm["retries"] == len(transport_faults)
    assert llm["failed"] == broken and llm["prompt_tokens"] == stored.prompt_tokens > 10_000
    assert llm["cost_usd"] == pytest.approx(stored.cost_usd) and llm["cost_usd"] > 0
    assert summary["judge_calls"]["calls"] == BUDGET
    assert main(["batch", "inspect", str(batch_id), "--database-url", db_url]) == 0
    table = capsys.readouterr()
    assert "LLM judge calls" in table.out and "estimated cost (USD)" in table.out

    run = as_dict(rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0])["run"]
    assert run["llm"]["base_url"] == base_url and run["llm"]["model"] == "gpt-4o-mini"
    _assert_no_key(
        engine,
        folders=[tmp_path / "runs"],
        texts=[first.out, first.err, inspected.out, inspected.err, table.out, table.err,
               caplog.text],
        must_contain=base_url,
    )  # fmt: skip
    engine.dispose()


def test_killed_run_resumes_without_resending_answered_pairs(llm_env, texts, truth_by_text,
                                                             tmp_path):  # fmt: skip
    url, engine = _sqlite(tmp_path)
    faults = Faults(slow_s=0.12, rate_429=0.1, retry_after_s=0)
    with running_llm_server(truth_by_text, faults=faults, seed=2) as server:
        args = _execute_args(url, "killed", 70, tmp_path / "runs", "--judge", "llm",
                             "--llm-base-url", server.base_url, "--llm-model", "gpt-4o-mini",
                             "--concurrency", "2")  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "cjlib.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "CJ_LLM_API_KEY": KEY},
        )
        deadline = time.monotonic() + 90
        while count(engine, "cj_judge_calls") < 12:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no decisions stored in time"
            time.sleep(0.05)
        proc.kill()
        out, err = proc.communicate()
        assert proc.returncode == -9
        sent_before = server.requests_by_pair()
        (batch_id,) = [r[0] for r in rows(engine, "SELECT id FROM cj_batch_uploads")]
        answered = {_text_pair(texts, p) for p in _pairs(engine, batch_id) if p.winner}
        assert 12 <= len(answered) < 70
        assert count(engine, "cj_comparison_pairs", "winner IS NULL") > 0  # killed mid-way

        result = resume_batch(engine, batch_id, output_dir=tmp_path / "resumed", concurrency=8)
        sent_after = server.requests_by_pair()

    assert (result.state, result.completion_reason) == ("COMPLETED", "budget_exhausted")
    assert {pair: sent_after[pair] for pair in answered} == {p: sent_before[p] for p in answered}
    pairs = _pairs(engine, batch_id)
    assert len(pairs) == 70 and all(p.winner for p in pairs)
    assert Counter(c.cid for c in _calls(engine, batch_id)) == Counter(p.cid for p in pairs)
    # Pairs without a stored answer were sent (again) by the resumed run.
    assert sum(sent_after.values()) > sum(sent_before.values())
    _assert_no_key(
        engine,
        folders=[tmp_path / "resumed"],
        texts=[out.decode(), err.decode()],
    )


def test_both_orders_then_replay_with_the_server_stopped(llm_env, texts, truth_by_text,
                                                         tmp_path, capsys):  # fmt: skip
    url, engine = _sqlite(tmp_path)
    options = dict(discrimination=1.0, position_bias=0.8, seed=3)
    with running_llm_server(truth_by_text, faults=Faults(rate_malformed=0.05), **options) as srv:
        args = _execute_args(
            url, "both", 120, tmp_path / "runs", "--judge", "llm", "--both-orders",
            "--llm-base-url", srv.base_url, "--llm-model", "local-model", "--seed", "4",
        )  # fmt: skip
        code = main(args)
        source = json.loads(capsys.readouterr().out)
    assert code == 0
    pairs = _pairs(engine, source["cj_batch_id"])
    assert len(pairs) == 120
    # Each forward pair is followed by its mirror, in the same wave.
    for forward, mirror in zip(pairs[::2], pairs[1::2], strict=True):
        fmeta, mmeta = as_dict(forward.meta), as_dict(mirror.meta)
        assert (mirror.a, mirror.b) == (forward.b, forward.a)
        assert mmeta["order"] == "BA" and mmeta["mirror_of"] == forward.cid
        assert mmeta["wave"] == fmeta["wave"] and "order" not in fmeta
    couples = sum(
        f.winner in ("essay_a", "essay_b") and m.winner in ("essay_a", "essay_b")
        for f, m in zip(pairs[::2], pairs[1::2], strict=True)
    )
    from cjlib import report

    table = report.llm_order_table(engine, source["cj_batch_id"])
    assert table["model"].tolist() == ["local-model-cjtest"]
    assert int(table.loc[0, "pairs_both_orders"]) == couples > 40
    assert table.loc[0, "agreement"] != "–" and table.loc[0, "position_effect"] != "–"
    calls = report.llm_calls_table(engine, source["cj_batch_id"])
    assert int(calls.loc[0, "calls"]) == 120 and calls.loc[0, "cost_usd"] is None  # no price

    # The server is stopped: the replay can only answer from the stored calls.
    args = _execute_args(
        url, "replayed", 120, tmp_path / "runs", "--judge", "replay",
        "--replay-from", str(source["cj_batch_id"]), "--seed", "4",
    )  # fmt: skip
    code = main(args)
    replayed = json.loads(capsys.readouterr().out)
    assert code == 0
    again = _pairs(engine, replayed["cj_batch_id"])

    def decisions(items):
        return [(p.a, p.b, p.winner, p.confidence, p.error_code) for p in items]

    assert decisions(again) == decisions(pairs)
    assert replayed["completion_reason"] == source["completion_reason"]
    judges = rows(engine, "SELECT DISTINCT judge_id FROM cj_comparison_pairs WHERE cj_batch_id "
                  "= :b", b=replayed["cj_batch_id"])  # fmt: skip
    assert judges == [(f"replay:{source['cj_batch_id']}",)]
    replay_calls = report.llm_order_table(engine, replayed["cj_batch_id"])
    assert replay_calls.equals(table)


def test_max_cost_stops_submitting_and_resume_counts_stored_calls(llm_env, truth_by_text,
                                                                  tmp_path):  # fmt: skip
    _, engine = _sqlite(tmp_path)
    with running_llm_server(truth_by_text, seed=1) as server:
        llm = {"base_url": server.base_url, "model": "local-model"}
        with pytest.raises(UsageError, match="--llm-price-prompt"):
            execute_batch(engine, assignment_id=ASSIGNMENT, course_id="ENG5", batch_label="x",
                          max_comparisons=100, judge="llm", llm=llm, max_cost_usd=5.0,
                          output_dir=None)  # fmt: skip
        assert count(engine, "cj_batch_uploads") == 0
        priced = {**llm, "prompt_price_per_1k": 1.0, "completion_price_per_1k": 2.0}
        result = execute_batch(
            engine, assignment_id=ASSIGNMENT, course_id="ENG5", batch_label="capped",
            max_comparisons=200, judge="llm", llm=priced, max_cost_usd=30.0, wave_size=10,
            output_dir=None, stability_threshold=0,
        )  # fmt: skip
        sent = sum(server.requests_by_pair().values())
    assert (result.state, result.completion_reason) == ("COMPLETED", "max_cost")
    cost = result.judge_calls["cost_usd"]
    per_call = cost / result.judge_calls["calls"]
    # Stopped within one call's cost of the cap, far below the comparison budget.
    assert 30.0 - per_call < cost <= 30.0 + per_call
    assert result.total_comparisons == sent == result.judge_calls["calls"] < 200
    # A resumed run's tracker starts from the stored calls.
    run = as_dict(rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0])["run"]
    assert run["max_cost_usd"] == 30.0 and run["llm"]["price_per_1k"] == {
        "prompt": 1.0,
        "completion": 2.0,
    }
    judge, _ = _resume_judge(engine, result.cj_batch_id, run, None)
    assert judge.costs.totals().cost_usd == pytest.approx(cost)
    assert judge.costs.would_exceed(30.0, more_calls=1)
    # The template is checked by its hash: a changed file is refused, not silently used.
    changed = {**run, "llm": {**run["llm"], "template_sha256": "f" * 64}}
    with pytest.raises(UsageError, match="not the one the batch started with"):
        _resume_judge(engine, result.cj_batch_id, changed, None)


def test_rejected_key_stops_the_run_in_one_line_and_resume_finishes(
    llm_env, truth_by_text, tmp_path, capsys, monkeypatch
):
    url, engine = _sqlite(tmp_path)
    monkeypatch.setenv("CJ_LLM_API_KEY", "sk-wrong-key")
    with running_llm_server(truth_by_text, api_key=KEY) as server:
        args = _execute_args(
            url, "auth", 40, tmp_path / "runs", "--judge", "llm",
            "--llm-base-url", server.base_url, "--llm-model", "gpt-4o-mini", "--concurrency", "4",
        )  # fmt: skip
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert "refused the API key" in err and "cj batch resume" in err
        assert "sk-wrong-key" not in err
        # The run stopped at once instead of failing every pair with the same error.
        assert len(server.log) <= 4  # at most the requests already in flight
        assert count(engine, "cj_comparison_pairs", "winner IS NOT NULL") == 0

        monkeypatch.setenv("CJ_LLM_API_KEY", KEY)
        (batch_id,) = [r[0] for r in rows(engine, "SELECT id FROM cj_batch_uploads")]
        result = resume_batch(engine, batch_id)
    assert result.state == "COMPLETED" and result.completed_comparisons == 40
    assert all(s.authorization_ok for s in server.log[-40:])


def test_notebooks_02_and_04_run_the_llm_judge_and_render_its_section(
    llm_env, truth_by_text, tmp_path, monkeypatch
):
    # Notebooks 02 (execute, with the LLM parameters) and 04 (the report) under papermill; 01
    # and 03 have no LLM part and the full `cj pipeline` run is covered by test_pipeline.py.
    monkeypatch.chdir(tmp_path)
    url, engine = _sqlite(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with running_llm_server(truth_by_text, position_bias=0.5, discrimination=1.0) as server:
        parameters = {
            "database_url": url, "dataset_dir": str(DATA), "batch_label": "llm-notebook",
            "max_comparisons": 40, "seed": 2, "run_dir": str(run_dir), "judge": "llm",
            "llm_base_url": server.base_url, "llm_model": "gpt-4o-mini", "both_orders": True,
        }  # fmt: skip
        execute_notebook("02_execute_eng5_batch", run_dir, parameters)
    executed = execute_notebook("04_validation_report", run_dir, parameters)
    html = export_report(executed, run_dir / REPORT_HTML).read_text(encoding="utf-8")
    assert "LLM judge" in html and "pairs_both_orders" in html and "gpt-4o-mini-cjtest" in html
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html
    (batch_id,) = [r[0] for r in rows(engine, "SELECT id FROM cj_batch_uploads")]
    run = as_dict(rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0])["run"]
    assert run["both_orders"] is True and run["llm"]["base_url"] == parameters["llm_base_url"]
    with session_scope(engine) as session:
        agreement = order_agreement(judge_calls_frame(session, batch_id))
    matched = int(agreement.loc[0, "n_matched"])
    assert matched > 0 and f"<td>{matched}</td>" in html
    _assert_no_key(engine, folders=[run_dir])
    engine.dispose()


def test_pipeline_refuses_llm_judge_without_server_before_any_notebook(
    llm_env, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cj.sqlite3'}"
    code = main(["pipeline", "--database-url", url, "--judge", "llm", "--llm-model", "m",
                 "--output-dir", "runs"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "CJ_LLM_BASE_URL" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_the_call_of_a_duplicate_answer_is_not_stored(tmp_path):
    from datetime import UTC, datetime

    from cjlib.llm.audit import JudgeCall
    from cjlib.workflow.results import ResultWriter

    _, engine = _sqlite(tmp_path)
    result = execute_batch(
        engine, assignment_id=ASSIGNMENT, course_id="ENG5", batch_label="sim",
        max_comparisons=4, judge_params={"error_rate": 0.0}, output_dir=None, finalize=False,
    )  # fmt: skip
    first = _pairs(engine, result.cj_batch_id)[0]
    now = datetime.now(UTC)
    call = JudgeCall(
        request_correlation_id=first.cid, essay_a_id=first.a, essay_b_id=first.b,
        judge_id="llm:m", template_sha256="0" * 64, model_requested="m", started_at=now,
        completed_at=now, total_s=0.1, attempts=1, http_status=200,
        winner="essay_b" if first.winner == "essay_a" else "essay_a", confidence=3,
        justification="a second answer",
    )  # fmt: skip
    writer = ResultWriter(engine, result.cj_batch_id)
    writer.add(call.to_result())
    assert writer.flush() == 0
    assert (writer.counts.duplicates, writer.counts.calls_dropped) == (1, 1)
    assert count(engine, "cj_judge_calls") == 0
    assert _pairs(engine, result.cj_batch_id)[0].winner == first.winner

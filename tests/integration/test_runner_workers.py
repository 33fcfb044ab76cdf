"""Several workers on one batch, and honest endings (issue 13, items 4 and 6).

- Two concurrent ``cj batch resume`` on PostgreSQL share a killed batch's remaining pairs:
  no correlation id is sent by both, one finalization, two outbox events.
- On SQLite a second live worker is refused with exit 2 and one line.
- A judge that raises gives failed comparisons carrying the error (``judge_exception``),
  never ``callback_lost``; a half-done batch finalized by hand says ``interrupted``; several
  ``execute_batch`` at once on one PostgreSQL database and assignment all succeed.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time

import pandas as pd
import pytest

from cjlib.db import get_engine
from cjlib.judges import SimulatedJudge
from cjlib.workflow import BatchFinalizer, execute_batch, register_anchors
from cjlib.workflow.runner import CALLBACK_LOST, JUDGE_EXCEPTION
from tests.integration.test_resume import (
    ASSIGNMENT,
    _finish,
    _register,
    _resume,
    _start_and_kill,
    assert_books_balance,
)
from tests.integration.workflow_helpers import count, rows, small_dataset


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_resumes_on_postgresql_share_the_work_and_finalize_once(db_url, tmp_path):
    engine = get_engine(db_url)
    _register(engine)
    dead_log = tmp_path / "judge_dead.log"
    batch_id = _start_and_kill(db_url, tmp_path, "judged:100", dead_log)
    try:
        before = {
            r[0]
            for r in rows(
                engine,
                "SELECT request_correlation_id FROM cj_comparison_pairs "
                "WHERE cj_batch_id = :b AND winner IS NOT NULL",
                b=batch_id,
            )
        }
        logs = [tmp_path / "judge_a.log", tmp_path / "judge_b.log"]
        # A per-decision delay so that both workers are at work at the same time.
        procs = [
            _resume(db_url, batch_id, tmp_path / name, log, CJ_TEST_JUDGE_DELAY="0.03")
            for name, log in zip("ab", logs, strict=True)
        ]
        outcomes = [_finish(proc) for proc in procs]
        for code, _, err in outcomes:
            assert code == 0, err
        summaries = [json.loads(out) for _, out, _ in outcomes]
        assert all(s["state"] == "COMPLETED" for s in summaries)
        assert_books_balance(engine, batch_id)
        sent = [log.read_text().split() if log.exists() else [] for log in logs]
        # Each worker sent each of its pairs once, no pair was sent by both, none decided
        # before the resume was sent again, and together they sent everything left.
        for ids in sent:
            assert len(ids) == len(set(ids))
        assert not set(sent[0]) & set(sent[1])
        assert not (set(sent[0]) | set(sent[1])) & before
        assert len(sent[0]) + len(sent[1]) == 200 - len(before)
        completed = count(
            engine,
            "cj_batch_state_transitions",
            "batch_id = :b AND to_state = 'COMPLETED'",
            b=batch_id,
        )
        assert completed == 1
        assert count(engine, "event_outbox", "aggregate_id = :b", b=str(batch_id)) == 2
        assert count(engine, "cj_batch_workers", "cj_batch_id = :b", b=batch_id) == 3
    finally:
        engine.dispose()


def test_a_second_worker_on_sqlite_is_refused_in_one_line(tmp_path):
    from cjlib.db import upgrade

    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    engine = get_engine(url)
    upgrade(engine)
    _register(engine)
    batch_id = _start_and_kill(url, tmp_path, "judged:100", tmp_path / "dead.log")
    # A live worker: resumes, then pauses inside its judge until killed.
    first = _resume(
        url,
        batch_id,
        tmp_path / "a",
        None,
        CJ_TEST_PAUSE_AT="judged:5",
        CJ_TEST_MARK_DIR=str(tmp_path),
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "paused").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        code, _out, err = _finish(_resume(url, batch_id, tmp_path / "b"))
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1
        assert f"batch {batch_id} is being run by worker" in lines[0]
        assert "SQLite allows one worker per batch" in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    # With the live worker gone, a resume completes the batch.
    code, _, err = _finish(_resume(url, batch_id, tmp_path / "c"))
    assert code == 0, err
    assert_books_balance(engine, batch_id)
    engine.dispose()


def test_a_judge_that_raises_gives_failed_comparisons_carrying_the_error(engine, tmp_path):
    dataset = small_dataset(tmp_path, n_students=12)
    truth = pd.read_csv(dataset / "truth.csv")
    students = truth[~truth["is_anchor"].astype(bool)]["essay_id"].tolist()
    missing = students[:3]
    truth[~truth["essay_id"].isin(missing)].to_csv(dataset / "truth.csv", index=False)
    register_anchors(engine, assignment_id=ASSIGNMENT, course_id="ENG5", dataset=dataset)
    result = execute_batch(
        engine,
        assignment_id=ASSIGNMENT,
        course_id="ENG5",
        batch_label="raising",
        max_comparisons=80,
        output_dir=tmp_path / "runs",
        dataset=dataset,
        callback_grace=0.0,
    )
    failed = rows(
        engine,
        "SELECT essay_a_els_id, essay_b_els_id, error_code, justification "
        "FROM cj_comparison_pairs WHERE error_code IS NOT NULL",
    )
    codes = {r.error_code for r in failed}
    assert CALLBACK_LOST not in codes
    raised = [r for r in failed if r.error_code == JUDGE_EXCEPTION]
    involving = [
        r
        for r in rows(engine, "SELECT essay_a_els_id, essay_b_els_id FROM cj_comparison_pairs")
        if {*r} & set(missing)
    ]
    assert involving and len(raised) == len(involving)
    for r in raised:
        essay = ({r.essay_a_els_id, r.essay_b_els_id} & set(missing)).pop()
        assert f"no ability for essay {essay!r}" in r.justification
        assert r.justification.startswith("UsageError: ")
    assert result.failed_comparisons >= len(raised)
    assert result.completion_reason == "budget_exhausted"


def test_a_half_done_batch_finalized_by_hand_says_interrupted(engine, monkeypatch, tmp_path):
    from cjlib.errors import CompletionTimeout

    _register(engine)
    judge = SimulatedJudge.judge

    def slow(self, request):
        time.sleep(0.01)
        return judge(self, request)

    monkeypatch.setattr(SimulatedJudge, "judge", slow)
    # Its bulk path would not go through ``judge``: decide one by one, slowly.
    monkeypatch.setattr(SimulatedJudge, "judge_many", lambda self, rs: [self.judge(r) for r in rs])
    with pytest.raises(CompletionTimeout, match="cj batch resume"):
        execute_batch(
            engine,
            assignment_id=ASSIGNMENT,
            course_id="ENG5",
            batch_label="half",
            max_comparisons=600,
            output_dir=tmp_path / "runs",
            await_completion=True,
            completion_timeout=2.0,
        )
    (batch_id,) = [r[0] for r in rows(engine, "SELECT id FROM cj_batch_uploads")]
    pending = count(engine, "cj_comparison_pairs", "winner IS NULL")
    final = BatchFinalizer(engine).finalize_scoring(batch_id)
    assert final.completion_reason == "interrupted"
    assert count(engine, "cj_comparison_pairs", "winner IS NULL") == 0
    assert count(engine, "cj_comparison_pairs", "error_code = 'closed_at_finalization'") == (
        pending
    )
    meta = rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta["completion_reason"] == "interrupted"


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_three_executes_at_once_on_one_postgresql_assignment_all_succeed(db_url, tmp_path):
    setup = get_engine(db_url)
    _register(setup)
    setup.dispose()
    dataset = small_dataset(tmp_path, n_students=12)
    outcomes: list[object] = [None] * 3
    barrier = threading.Barrier(3)

    def run(index: int) -> None:
        engine = get_engine(db_url)
        try:
            barrier.wait()
            outcomes[index] = execute_batch(
                engine,
                assignment_id=ASSIGNMENT,
                course_id="ENG5",
                batch_label=f"c{index}",
                max_comparisons=40,
                output_dir=tmp_path / "runs",
                dataset=dataset,
                seed=index,
            )
        except Exception as err:  # reported below, with its type
            outcomes[index] = err
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), repr(outcome)
        assert outcome.state == "COMPLETED"
    engine = get_engine(db_url)
    assert count(engine, "cj_batch_uploads") == 3
    assert count(engine, "cj_batch_states", "state = 'COMPLETED'") == 3
    engine.dispose()
    shutil.rmtree(dataset)

"""Crash safety for real: ``cj batch execute`` killed with SIGKILL, then ``cj batch resume``.

Each test runs the CLI in a process of its own (:func:`tests.integration.crash_cli.start`
forks it from a server that imported cjlib once; the module only adds a per-decision delay,
a log of the correlation ids the judge was sent, and a pause at a chosen point), kills it
there, checks the health view flags the dead batch as stalled, resumes it with
``cj batch resume`` and checks the batch's books: it completed, no pair has two results,
counters equal rows, every transition is recorded and allowed, nothing pending. The killed
worker is recognised as dead by its pid on this host, so nothing waits 30 s."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from cjlib.db import get_engine
from cjlib.db.models import CoreCJState
from cjlib.db.repository import ALLOWED_TRANSITIONS
from cjlib.diagnostics import HealthThresholds, batch_health, inspect_batch
from cjlib.package_data import sample_dataset_dir
from cjlib.workflow import register_anchors
from tests.integration import crash_cli
from tests.integration.workflow_helpers import count, rows

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "eng5-resume"
BUDGET = 200
#: Wave size is half the 132 essays of the sample data set: 66 pairs a wave.
WAVE = 66


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CJ_TEST_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return list(args)


def _register(engine) -> None:
    # In this process: the subprocesses are for what gets killed and what resumes.
    register_anchors(
        engine, assignment_id=ASSIGNMENT, course_id="ENG5", dataset=sample_dataset_dir()
    )


def _execute_args(url: str, tmp_path: Path, label: str = "crash") -> list[str]:
    return _cli(
        "batch",
        "execute",
        "--assignment-id",
        ASSIGNMENT,
        "--course-id",
        "ENG5",
        "--batch-label",
        label,
        "--max-comparisons",
        str(BUDGET),
        "--seed",
        "3",
        "--output-dir",
        str(tmp_path / "runs"),
        "--json",
        "--database-url",
        url,
    )


def _start_and_kill(url: str, tmp_path: Path, pause_at: str, log: Path) -> int:
    """Start ``cj batch execute``, SIGKILL it once it reached ``pause_at``; the batch id."""
    marks = tmp_path / f"marks_{pause_at.replace(':', '_')}"
    marks.mkdir()
    proc = crash_cli.start(
        _execute_args(url, tmp_path),
        env=_env(
            CJ_TEST_PAUSE_AT=pause_at,
            CJ_TEST_MARK_DIR=str(marks),
            CJ_TEST_JUDGE_DELAY="0.002",
            CJ_TEST_JUDGE_LOG=str(log),
        ),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (marks / "paused").exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"execute ended ({proc.returncode}) before {pause_at}: "
                    f"{proc.output()[1][-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"execute did not reach {pause_at} within 60 s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    engine = get_engine(url)
    try:
        (batch_id,) = [r[0] for r in rows(engine, "SELECT id FROM cj_batch_uploads")][-1:]
    finally:
        engine.dispose()
    return batch_id


def _resume(
    url: str, batch_id: int, tmp_path: Path, log: Path | None = None, *extra: str, **env_extra
):
    env = _env(**({"CJ_TEST_JUDGE_LOG": str(log)} if log else {}), **env_extra)
    return crash_cli.start(
        _cli(
            "batch",
            "resume",
            str(batch_id),
            "--json",
            "--output-dir",
            str(tmp_path / "runs"),
            "--completion-timeout",
            "120",
            "--database-url",
            url,
            *extra,
        ),
        env=env,
        cwd=ROOT,
    )


def _finish(proc: crash_cli.CliProcess) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _decided_ids(engine, batch_id: int) -> set[str]:
    return {
        r[0]
        for r in rows(
            engine,
            "SELECT request_correlation_id FROM cj_comparison_pairs "
            "WHERE cj_batch_id = :b AND winner IS NOT NULL",
            b=batch_id,
        )
    }


def assert_books_balance(engine, batch_id: int) -> None:
    """Completed; one result per pair; counters equal rows; transitions complete and allowed."""
    report = inspect_batch(engine, batch_id)
    assert report.cj_state == "COMPLETED"
    assert report.comparisons_agree, (report.comparisons_from_state, report.comparisons_from_pairs)
    pairs = report.comparisons_from_pairs
    assert pairs.total == pairs.completed + pairs.failed == BUDGET
    assert (
        count(engine, "cj_comparison_pairs", "cj_batch_id = :b AND winner IS NULL", b=batch_id) == 0
    )
    # One row (so at most one result) per correlation id and per (essays, wave) draw.
    assert (
        count(
            engine,
            "(SELECT DISTINCT request_correlation_id FROM cj_comparison_pairs "
            "WHERE cj_batch_id = :b) AS d",
            b=batch_id,
        )
        == BUDGET
    )
    history = rows(
        engine,
        "SELECT from_state, to_state FROM cj_batch_state_transitions WHERE batch_id = :b "
        "ORDER BY id",
        b=batch_id,
    )
    previous = None
    for from_state, to_state in history:
        assert from_state == previous, f"gap in history before {from_state}->{to_state}"
        allowed = ALLOWED_TRANSITIONS[CoreCJState(from_state) if from_state else None]
        assert CoreCJState(to_state) in allowed, f"{from_state} -> {to_state} not allowed"
        previous = to_state
    assert previous == "COMPLETED"
    assert [t for _, t in history].count("COMPLETED") == 1
    assert count(engine, "event_outbox", "aggregate_id = :b", b=str(batch_id)) == 2


def _assert_second_resume_says_already_final(url: str, batch_id: int, capsys) -> None:
    from cjlib.cli.main import main

    capsys.readouterr()
    assert main(["batch", "resume", str(batch_id), "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert f"batch {batch_id} is already final" in out and "nothing to resume" in out


def _assert_stalled(engine, batch_id: int) -> None:
    time.sleep(0.3)
    frame = batch_health(engine, thresholds=HealthThresholds(stalled_after=0.2))
    row = frame.set_index("cj_batch_id").loc[batch_id]
    assert row["cj_state"] in ("GENERATING_PAIRS", "WAITING_CALLBACKS", "INITIALIZING")
    assert row["health"] == "stalled_callbacks"


@pytest.mark.parametrize(
    ("pause_at", "decided_before"),
    [
        ("wave:2", WAVE),  # inside the transaction generating wave 2: wave 1 is in
        ("judged:100", None),  # wave 2 claimed and being judged, none of its results written
        ("finalize:fit", BUDGET),  # inside the finalization transaction: all decided
    ],
)
def test_killed_execute_is_flagged_stalled_then_resume_completes_it(
    db_url, tmp_path, capsys, pause_at, decided_before
):
    engine = get_engine(db_url)
    _register(engine)
    first_log = tmp_path / "judge_first.log"
    batch_id = _start_and_kill(db_url, tmp_path, pause_at, first_log)
    try:
        _assert_stalled(engine, batch_id)
        before = _decided_ids(engine, batch_id)
        if decided_before is not None:
            assert len(before) == decided_before
        else:
            assert 0 < len(before) < BUDGET
        resume_log = tmp_path / "judge_resume.log"
        code, out, err = _finish(_resume(db_url, batch_id, tmp_path, resume_log))
        assert code == 0, err
        summary = json.loads(out)
        assert summary["state"] == "COMPLETED" and summary["already_final"] is False
        assert summary["completion_reason"] == "budget_exhausted"
        assert_books_balance(engine, batch_id)
        sent_again = resume_log.read_text().split() if resume_log.exists() else []
        # A pair with a result is never sent again; each pair is sent once by the resume.
        assert not set(sent_again) & before
        assert len(sent_again) == len(set(sent_again)) == BUDGET - len(before)
        first = set(first_log.read_text().split())
        # Pairs sent again were sent by the dead worker (same correlation id) or are new.
        resent = set(sent_again) & first
        assert resent <= {r for r in first if r not in before}
        metadata = rows(
            engine, "SELECT processing_metadata FROM cj_batch_uploads WHERE id = :b", b=batch_id
        )[0][0]
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        assert len(metadata["resumed_at"]) == 1
        if pause_at.startswith("finalize"):
            _assert_second_resume_says_already_final(db_url, batch_id, capsys)
    finally:
        engine.dispose()


def test_resume_of_a_failed_batch_says_why_and_exits_1(tmp_path, capsys):
    from cjlib.cli.main import main
    from cjlib.workflow import execute_batch
    from cjlib.workflow.finalizer import BatchFinalizer, FinalizationError

    url = f"sqlite:///{tmp_path / 'failed.sqlite3'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    engine = get_engine(url)
    _register(engine)
    result = execute_batch(
        engine,
        assignment_id=ASSIGNMENT,
        course_id="ENG5",
        batch_label="failing",
        max_comparisons=80,
        finalize=False,
    )

    def broken(step: str) -> None:
        if step == "project":
            raise RuntimeError("the anchors' grade scale is gone")

    with pytest.raises(FinalizationError):
        BatchFinalizer(engine, fault_hook=broken).finalize_scoring(result.cj_batch_id)
    engine.dispose()
    capsys.readouterr()
    assert main(["batch", "resume", str(result.cj_batch_id), "--database-url", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"batch {result.cj_batch_id} is FAILED and cannot be resumed" in err[0]
    assert "the anchors' grade scale is gone" in err[0]


def test_finalize_now_finalizes_what_was_decided_as_interrupted(db_url, tmp_path, capsys):
    from cjlib.cli.main import main

    engine = get_engine(db_url)
    _register(engine)
    batch_id = _start_and_kill(db_url, tmp_path, "judged:100", tmp_path / "j.log")
    try:
        decided = len(_decided_ids(engine, batch_id))
        capsys.readouterr()
        code = main(
            [
                "batch",
                "resume",
                str(batch_id),
                "--finalize-now",
                "--json",
                "--output-dir",
                str(tmp_path / "runs"),
                "--database-url",
                db_url,
            ]
        )
        assert code == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["completion_reason"] == "interrupted"
        report = inspect_batch(engine, batch_id)
        assert report.cj_state == "COMPLETED" and report.comparisons_agree
        assert report.comparisons_from_pairs.completed + report.comparisons_from_pairs.failed == (
            report.comparisons_from_pairs.total
        )
        closed = count(
            engine,
            "cj_comparison_pairs",
            "cj_batch_id = :b AND error_code = 'closed_at_finalization'",
            b=batch_id,
        )
        assert closed == report.comparisons_from_pairs.total - decided > 0
    finally:
        engine.dispose()


def test_importing_the_crash_harness_leaves_the_library_unpatched():
    # The harness patches its hooks into the cj process only; a test process that imports
    # it to start one keeps the real judge, pairing and finalizer for its later tests.
    from cjlib.judges import SimulatedJudge
    from cjlib.pairing import BalancedPairing
    from cjlib.workflow import finalizer

    assert SimulatedJudge.judge is not crash_cli._slow_judge
    assert SimulatedJudge.judge_many is not crash_cli._one_by_one
    assert BalancedPairing.next_wave is not crash_cli._next_wave_hook
    assert finalizer.BatchFinalizer._step is not crash_cli._step_hook

"""The ENG5 batch workflow end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from cjlib.db.models import CoreCJState
from cjlib.errors import BatchRefused, CompletionTimeout
from cjlib.provenance import sha256_file
from cjlib.workflow import execute_batch, verify_anchors
from cjlib.workflow.artefacts import validate_assessment_run
from cjlib.workflow.callbacks import CallbackOutcome, record_callback
from tests.integration.workflow_helpers import (
    ASSIGNMENT,
    COURSE,
    as_dict,
    count,
    register,
    rows,
    small_dataset,
    transitions,
)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("data"))


def _execute(engine, dataset, tmp_path, **kw):
    params = dict(
        assignment_id=ASSIGNMENT,
        course_id=COURSE,
        batch_label="test-batch",
        max_comparisons=kw.pop("max_comparisons", 180),
        dataset=dataset,
        seed=kw.pop("seed", 3),
        output_dir=tmp_path / "runs",
        judge_params=kw.pop("judge_params", {"error_rate": 0.0}),
        callback_grace=kw.pop("callback_grace", 2.0),
    )
    params.update(kw)
    return execute_batch(engine, **params)


def test_register_anchors_twice_changes_nothing(engine, dataset):
    register(engine, dataset)
    before = rows(
        engine, "SELECT anchor_label, grade, text_storage_id FROM anchor_essay_references"
    )
    register(engine, dataset)
    after = rows(engine, "SELECT anchor_label, grade, text_storage_id FROM anchor_essay_references")
    assert len(after) == 12 and sorted(before) == sorted(after)
    assert count(engine, "assessment_instructions") == 1
    check = verify_anchors(engine, assignment_id=ASSIGNMENT, expect=12)
    assert check.ok, check.problems
    assert sorted(check.anchors["grade"]) == sorted(
        ["F+", "F+", "E-", "E+", "D-", "D+", "C-", "C+", "B", "B", "A", "A"]
    )


def test_verify_reports_wrong_count_and_dangling_text(engine, dataset):
    register(engine, dataset)
    with engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text(
                "UPDATE anchor_essay_references SET text_storage_id = 'missing' "
                "WHERE anchor_label = (SELECT min(anchor_label) FROM anchor_essay_references)"
            )
        )
    check = verify_anchors(engine, assignment_id=ASSIGNMENT, expect=13)
    assert not check.ok
    assert any("expected 13 anchors, found 12" in p for p in check.problems)
    assert any("missing from the content store" in p for p in check.problems)


def test_execute_completes_with_valid_anchors_and_projections(engine, dataset, tmp_path):
    register(engine, dataset)
    result = _execute(engine, dataset, tmp_path)
    b = result.cj_batch_id
    assert (result.status, result.state) == ("COMPLETE_STABLE", "COMPLETED")
    history = transitions(engine, b)
    assert history[0] == "INITIALIZING" and history[1] == "GENERATING_PAIRS"
    assert history[-3:] == ["WAITING_CALLBACKS", "SCORING", "COMPLETED"]
    state = rows(engine, "SELECT * FROM cj_batch_states WHERE batch_id = :b", b=b)[0]
    assert state.submitted_comparisons == 180
    assert state.completed_comparisons == state.submitted_comparisons
    assert state.failed_comparisons == 0
    assert count(engine, "cj_processed_essays", "cj_batch_id = :b AND is_anchor", b=b) == 12
    for essay in rows(engine, "SELECT * FROM cj_processed_essays WHERE cj_batch_id = :b", b=b):
        assert as_dict(essay.processing_metadata)["is_anchor"] is bool(essay.is_anchor)
        assert essay.current_bt_se is None or essay.current_bt_se > 0
    assert count(engine, "grade_projections", "cj_batch_id = :b", b=b) == 24
    upload = rows(engine, "SELECT * FROM cj_batch_uploads WHERE id = :b", b=b)[0]
    assert upload.completed_at is not None
    assert as_dict(upload.processing_metadata)["completion_reason"] == "budget_exhausted"
    events = rows(engine, "SELECT event_type, correlation_id, payload FROM event_outbox")
    assert sorted(e.event_type for e in events) == [
        "assessment.result.published.v1",
        "cj_assessment.completed.v1",
    ]
    assert {e.correlation_id for e in events} == {upload.event_correlation_id}
    published = next(as_dict(e.payload) for e in events if e.event_type.startswith("assessment"))
    anchors = [e for e in published["essays"] if e["is_anchor"]]
    assert len(anchors) == 12 and all(e["anchor_grade"] for e in anchors)
    students = [e for e in published["essays"] if not e["is_anchor"]]
    assert all(
        abs(sum(e["projected_grade"]["probabilities"].values()) - 1) < 1e-6 for e in students
    )


def test_artefacts_validate_and_manifest_matches_files(engine, dataset, tmp_path):
    register(engine, dataset)
    result = _execute(engine, dataset, tmp_path, max_comparisons=60)
    record = json.loads(result.artefacts["execute_record"].read_text())
    validate_assessment_run(record)
    assert record["metadata"]["cj_batch_id"] == result.cj_batch_id
    assert len(record["comparisons"]) == 60
    summary = {e["els_essay_id"]: e for e in record["bt_summary"]}
    compared = {}
    for c in record["comparisons"]:
        for k in ("essay_a_id", "essay_b_id"):
            compared[c[k]] = compared.get(c[k], 0) + 1
    for essay_id, n in compared.items():
        assert summary[essay_id]["comparison_count"] == n
    manifest = {m["path"]: m["sha256"] for m in record["validation"]["manifest"]}
    assert set(manifest) == {"grade_projections.csv", "requests/cj_assessment_request.json"}
    for path, digest in manifest.items():
        assert sha256_file(result.run_dir / path) == digest
    again = _execute(engine, dataset, tmp_path, max_comparisons=60)
    assert again.run_dir != result.run_dir and result.run_dir.exists()


def test_smallest_documented_run_completes(engine, dataset, tmp_path):
    register(engine, dataset)
    result = _execute(engine, dataset, tmp_path, max_comparisons=5)
    assert (result.status, result.state) == ("COMPLETE_STABLE", "COMPLETED")
    assert result.submitted_comparisons == 5 == result.completed_comparisons
    assert transitions(engine, result.cj_batch_id)[-3:] == [
        "WAITING_CALLBACKS",
        "SCORING",
        "COMPLETED",
    ]
    assert count(engine, "cj_processed_essays", "is_anchor") == 12
    assert result.projection_count > 0
    meta = as_dict(rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0])
    # 5 pairs touch at most 5 anchors; the rest are named, not silently dropped.
    assert len(meta["unscored_anchors"]) >= 7


def test_second_finalize_writes_nothing(engine, dataset, tmp_path):
    from cjlib.workflow import BatchFinalizer

    register(engine, dataset)
    result = _execute(engine, dataset, tmp_path, max_comparisons=60)
    tables = ["grade_projections", "event_outbox", "cj_batch_state_transitions"]
    before = {t: count(engine, t) for t in tables}
    upload_before = rows(engine, "SELECT * FROM cj_batch_uploads")
    again = BatchFinalizer(engine).finalize_scoring(result.cj_batch_id)
    assert again.already_final
    assert {t: count(engine, t) for t in tables} == before
    assert rows(engine, "SELECT * FROM cj_batch_uploads") == upload_before


def test_duplicate_unknown_and_late_callbacks_change_nothing(engine, dataset, tmp_path):
    from cjlib.workflow import BatchFinalizer

    register(engine, dataset)
    run = _execute(engine, dataset, tmp_path, max_comparisons=40, finalize=False)
    b = run.cj_batch_id
    assert run.state == "WAITING_CALLBACKS"
    pair = rows(engine, "SELECT * FROM cj_comparison_pairs WHERE cj_batch_id = :b", b=b)[0]
    counters = rows(engine, "SELECT * FROM cj_batch_states WHERE batch_id = :b", b=b)
    flipped = "essay_b" if pair.winner == "essay_a" else "essay_a"
    outcome = record_callback(engine, pair.request_correlation_id, winner=flipped)
    assert outcome is CallbackOutcome.DUPLICATE
    assert record_callback(engine, "no-such-request", winner="essay_a") is CallbackOutcome.UNKNOWN
    assert rows(engine, "SELECT * FROM cj_batch_states WHERE batch_id = :b", b=b) == counters
    after = rows(engine, "SELECT winner FROM cj_comparison_pairs WHERE id = :i", i=pair.id)[0]
    assert after.winner == pair.winner
    # A pending pair whose callback only arrives after finalization is ignored as late.
    with engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("UPDATE cj_comparison_pairs SET winner = NULL, completed_at = NULL WHERE id = :i"),
            {"i": pair.id},
        )
    BatchFinalizer(engine).finalize_scoring(b)
    late = record_callback(engine, pair.request_correlation_id, winner="essay_a")
    assert late is CallbackOutcome.LATE
    # Finalization closed the pending pair as failed; the late answer did not change it.
    closed = rows(
        engine, "SELECT winner, error_code FROM cj_comparison_pairs WHERE id = :i", i=pair.id
    )[0]
    assert tuple(closed) == ("error", "closed_at_finalization")


def test_timeout_leaves_batch_waiting_for_diagnostics(engine, dataset, tmp_path):
    register(engine, dataset)
    with pytest.raises(CompletionTimeout, match="WAITING_CALLBACKS"):
        _execute(
            engine,
            dataset,
            tmp_path,
            judge_params={"lost_rate": 1.0},
            completion_timeout=0.5,
            callback_grace=60,
        )
    state = rows(engine, "SELECT state FROM cj_batch_states")[0].state
    assert state == CoreCJState.WAITING_CALLBACKS.value
    assert count(engine, "grade_projections") == 0


def test_lost_callbacks_are_recorded_as_failed_after_grace(engine, dataset, tmp_path):
    register(engine, dataset)
    result = _execute(
        engine, dataset, tmp_path, max_comparisons=60, judge_params={"lost_rate": 0.2},
        callback_grace=0.3,
    )  # fmt: skip
    assert result.state == "COMPLETED"
    assert result.failed_comparisons > 0
    assert result.completed_comparisons + result.failed_comparisons == 60
    lost = count(engine, "cj_comparison_pairs", "error_code = 'callback_lost'")
    assert lost == result.failed_comparisons


@pytest.mark.parametrize(
    ("setup", "budget", "message"),
    [
        ("none", 50, "no assessment instructions"),
        ("registered", 1, "at least 2"),
    ],
)
def test_execute_refuses_early_and_writes_nothing(
    engine, dataset, tmp_path, setup, budget, message
):
    if setup == "registered":
        register(engine, dataset)
    with pytest.raises(BatchRefused, match=message):
        _execute(engine, dataset, tmp_path, max_comparisons=budget)
    assert count(engine, "cj_batch_uploads") == 0
    assert count(engine, "cj_processed_essays") == 0


def test_execute_refuses_fewer_than_two_students(engine, dataset, tmp_path):
    import shutil

    register(engine, dataset)
    tiny = tmp_path / "tiny"
    shutil.copytree(dataset, tiny)
    (tiny / "students.csv").write_text("essay_id,file\nS0001,students/S0001.txt\n")
    with pytest.raises(BatchRefused, match="at least 2"):
        _execute(engine, tiny, tmp_path)
    assert count(engine, "cj_batch_uploads") == 0


def test_projection_unavailable_still_completes_and_says_why(engine, dataset, tmp_path):
    import shutil

    one_grade = tmp_path / "one_grade"
    shutil.copytree(dataset, one_grade)
    lines = (one_grade / "anchors.csv").read_text().splitlines()
    rewritten = [lines[0]] + [",".join([p.split(",")[0], "B", p.split(",")[2]]) for p in lines[1:]]
    (one_grade / "anchors.csv").write_text("\n".join(rewritten) + "\n")
    register(engine, one_grade)
    result = _execute(engine, one_grade, tmp_path, max_comparisons=60)
    assert (result.status, result.state) == ("COMPLETE_STABLE", "COMPLETED")
    assert result.projection_count == 0
    meta = as_dict(rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0][0])
    assert meta["projection_unavailable_reason"] == "too_few_anchor_grades"
    for event in rows(engine, "SELECT payload FROM event_outbox"):
        assert as_dict(event.payload)["projection_unavailable_reason"] == "too_few_anchor_grades"


def test_git_revision_is_the_checkout_of_the_code_not_the_working_directory(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    import cjlib
    from cjlib.provenance import git_revision

    repo = Path(cjlib.__file__).resolve().parent.parent
    expected = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=repo, check=True
    ).stdout.strip()
    monkeypatch.chdir(tmp_path)  # not a git checkout
    assert git_revision() == expected


def test_execute_leaves_the_projections_csv_to_the_snapshot_when_asked(engine, dataset, tmp_path):
    register(engine, dataset)
    run_dir = tmp_path / "run"
    result = _execute(engine, dataset, tmp_path, max_comparisons=40, run_dir=run_dir,
                      projections_csv=False)  # fmt: skip
    assert "grade_projections" not in result.artefacts
    assert not (run_dir / "grade_projections.csv").exists()
    assert (run_dir / "assessment_run.execute.json").is_file()


def test_resume_that_cannot_write_artefacts_says_how_to_write_them_again(engine, dataset, tmp_path):
    from cjlib.errors import ArtefactsNotWritten
    from cjlib.workflow.execute import resume_batch

    register(engine, dataset)
    run = _execute(engine, dataset, tmp_path, max_comparisons=40, output_dir=None,
                   finalize=False)  # fmt: skip
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(ArtefactsNotWritten, match=f"cj batch artefacts {run.cj_batch_id}"):
        resume_batch(engine, run.cj_batch_id, finalize_now=True, output_dir=not_a_folder)
    state = rows(engine, "SELECT state FROM cj_batch_states WHERE batch_id = :b",
                 b=run.cj_batch_id)  # fmt: skip
    assert state[0][0] == "COMPLETED"

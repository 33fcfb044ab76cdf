"""Pairing strategies and stopping rules in real batch runs (SQLite), through the CLI and API."""

from __future__ import annotations

import json

import pytest

from cjlib.cli.main import main
from cjlib.db import get_engine
from cjlib.errors import CompletionTimeout, UsageError
from cjlib.workflow import execute_batch
from cjlib.workflow.execute import resume_batch
from tests.integration.workflow_helpers import (
    ASSIGNMENT,
    COURSE,
    as_dict,
    count,
    register,
    rows,
    small_dataset,
)

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return small_dataset(tmp_path_factory.mktemp("design"), n_students=12)


def _metadata(engine, batch_id: int) -> dict:
    (row,) = rows(
        engine, "SELECT processing_metadata FROM cj_batch_uploads WHERE id = :b", b=batch_id
    )
    return as_dict(row.processing_metadata)


def _pairs(engine, batch_id: int) -> list[tuple[str, str]]:
    return [
        (r.essay_a_els_id, r.essay_b_els_id)
        for r in rows(
            engine,
            "SELECT essay_a_els_id, essay_b_els_id FROM cj_comparison_pairs "
            "WHERE cj_batch_id = :b ORDER BY id",
            b=batch_id,
        )
    ]


def _cli_execute(db_url, dataset, tmp_path, capsys, *extra: str) -> tuple[int, dict | str]:
    """Exit code and the JSON summary, or stderr when the command failed."""
    code = main(
        [
            "batch", "execute", "--assignment-id", ASSIGNMENT, "--course-id", COURSE,
            "--batch-label", "design", "--max-comparisons", "400", "--seed", "4",
            "--dataset", str(dataset), "--output-dir", str(tmp_path / "runs"), "--json",
            "--database-url", db_url, *extra,
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


@SQLITE
def test_low_grade_certainty_target_stops_early_with_its_reason(db_url, dataset, tmp_path, capsys):
    engine = get_engine(db_url)
    register(engine, dataset)
    code, summary = _cli_execute(
        db_url, dataset, tmp_path, capsys, "--target-grade-certainty", "0.25"
    )
    assert code == 0
    assert summary["completion_reason"] == "target_grade_certainty"
    assert summary["comparisons"]["total"] < 400  # stopped well before the budget
    meta = _metadata(engine, summary["cj_batch_id"])
    assert meta["completion_reason"] == "target_grade_certainty"
    assert meta["run"]["stopping"] == {"target_grade_certainty": 0.25}
    assert meta["stopping"]["rule"] == "target_grade_certainty"
    assert meta["stopping"]["measured"]["target_grade_certainty"] >= 0.25
    engine.dispose()


@SQLITE
def test_target_reliability_stops_early_on_the_split_half_under_balanced(engine, dataset, tmp_path):
    register(engine, dataset)
    result = execute_batch(
        engine, assignment_id=ASSIGNMENT, course_id=COURSE, batch_label="rel",
        max_comparisons=600, dataset=dataset, seed=2, output_dir=None, callback_grace=1.0,
        stability_threshold=0.0, target_reliability=0.6,
    )  # fmt: skip
    assert result.completion_reason == "target_reliability"
    assert result.total_comparisons < 600
    meta = _metadata(engine, result.cj_batch_id)
    assert meta["run"]["stopping"] == {"target_reliability": 0.6}
    assert meta["stopping"]["rule"] == "target_reliability"
    assert meta["stopping"]["measured"]["target_reliability"] >= 0.6
    # The split-half that fired is the one the report recomputes from the stored decisions.
    from cjlib.design import split_half_reliability
    from cjlib.report import load_batch

    decided = load_batch(engine, result.cj_batch_id).decided
    frame = decided[["essay_a_id", "essay_b_id", "winner"]].reset_index(drop=True)
    assert split_half_reliability(frame, n_splits=5, seed=2, alpha=0.03) >= 0.6


@SQLITE
def test_adaptive_batch_completes_records_its_strategy_and_pairs_differently(
    db_url, dataset, tmp_path, capsys
):
    engine = get_engine(db_url)
    register(engine, dataset)
    code, adaptive = _cli_execute(
        db_url, dataset, tmp_path, capsys, "--pairing", "adaptive",
        "--pairing-param", "min_comparisons=2",
    )  # fmt: skip
    assert code == 0
    assert (adaptive["status"], adaptive["state"]) == ("COMPLETE_STABLE", "COMPLETED")
    meta = _metadata(engine, adaptive["cj_batch_id"])
    assert meta["run"]["pairing"] == {"name": "adaptive", "params": {"min_comparisons": 2}}
    code, balanced = _cli_execute(db_url, dataset, tmp_path, capsys)
    assert code == 0
    assert _metadata(engine, balanced["cj_batch_id"])["run"]["pairing"]["name"] == "balanced"
    a, b = _pairs(engine, adaptive["cj_batch_id"]), _pairs(engine, balanced["cj_batch_id"])
    assert a != b and all(x != y for x, y in a + b)
    engine.dispose()


@SQLITE
@pytest.mark.parametrize("name", ["adaptive", "boundary"])
def test_adaptive_strategies_get_estimates_between_waves_after_their_warm_up(
    engine, dataset, monkeypatch, name
):
    from cjlib.pairing import PAIRING_STRATEGIES

    register(engine, dataset)
    cls = PAIRING_STRATEGIES[name]
    calls = []
    original = cls.next_wave

    def spy(self, essay_ids, n_pairs, state, **kw):
        least = min(state.comparisons(e) for e in essay_ids)
        calls.append((least, kw.get("estimates")))
        return original(self, essay_ids, n_pairs, state, **kw)

    monkeypatch.setattr(cls, "next_wave", spy)
    result = execute_batch(
        engine, assignment_id=ASSIGNMENT, course_id=COURSE, batch_label=name,
        max_comparisons=150, dataset=dataset, seed=8, output_dir=None, callback_grace=1.0,
        pairing=name, pairing_params={"min_comparisons": 2},
    )  # fmt: skip
    assert result.state == "COMPLETED" and result.total_comparisons == 150
    assert calls[0] == (0, None)  # the first wave knows nothing yet
    assert all(est is None for least, est in calls if least < 2)  # warm-up: balanced
    fed = [est for least, est in calls if est is not None]
    assert len(fed) >= 3
    assert all(len(est.theta) == 24 for est in fed)  # every essay placed by the refit
    if name == "boundary":  # grade boundaries from the anchors' projection
        assert all(est.boundaries.size == 9 for est in fed)


@SQLITE
def test_unknown_pairing_is_refused_before_anything_is_written(db_url, dataset, tmp_path, capsys):
    engine = get_engine(db_url)
    register(engine, dataset)
    code, err = _cli_execute(db_url, dataset, tmp_path, capsys, "--pairing", "swiss")
    assert code == 2
    assert "unknown pairing strategy 'swiss'" in err
    code, err = _cli_execute(db_url, dataset, tmp_path, capsys, "--target-reliability", "1.5")
    assert code == 2
    assert "target reliability must be a number in (0, 1]" in err
    assert count(engine, "cj_batch_uploads") == 0
    engine.dispose()


@SQLITE
def test_resume_rebuilds_the_recorded_strategy_and_targets(engine, dataset, tmp_path, monkeypatch):
    register(engine, dataset)
    with pytest.raises(CompletionTimeout):
        execute_batch(
            engine, assignment_id=ASSIGNMENT, course_id=COURSE, batch_label="resume",
            max_comparisons=120, dataset=dataset, seed=6, output_dir=None, callback_grace=1.0,
            pairing="boundary", pairing_params={"min_comparisons": 2},
            target_grade_certainty=0.99, completion_timeout=1e-6,
        )  # fmt: skip
    (batch_id,) = [r.id for r in rows(engine, "SELECT id FROM cj_batch_uploads")]
    import cjlib.workflow.execute as execute_module

    seen = []
    original = execute_module.BatchRunner

    class Spy(original):
        def __init__(self, *args, **kwargs):
            seen.append((kwargs["options"], kwargs.get("anchor_grades")))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(execute_module, "BatchRunner", Spy)
    result = resume_batch(engine, batch_id, completion_timeout=300)
    (options, anchor_grades), *_ = seen
    assert options.pairing.record() == {
        "name": "boundary",
        "params": {
            "min_comparisons": 2, "min_share": 0.5, "anchor_preference": 0.3,
            "boundary_indices": None,
        },
    }  # fmt: skip
    assert options.target_grade_certainty == 0.99
    assert len(anchor_grades) == 12  # boundary pairing projects grades between waves
    assert result.state == "COMPLETED"
    assert result.completion_reason in ("budget_exhausted", "target_grade_certainty")


def test_pairing_parameters_are_checked_by_name():
    from cjlib.workflow.execute import _pairing_and_stopping

    with pytest.raises(UsageError, match="no parameter"):
        _pairing_and_stopping("adaptive", {"window": 3}, {})
    strategy, targets = _pairing_and_stopping("BOUNDARY", None, {"target_reliability": 0.8})
    assert strategy.name == "boundary" and targets == {"target_reliability": 0.8}


@SQLITE
def test_notebook_02_runs_the_batch_with_the_pairing_and_target_it_is_given(
    db_url, dataset, tmp_path
):
    from cjlib.pipeline import execute_notebook

    engine = get_engine(db_url)
    register(engine, dataset)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    execute_notebook(
        "02_execute_eng5_batch",
        run_dir,
        {
            "database_url": db_url, "assignment_id": ASSIGNMENT, "course_id": COURSE,
            "dataset_dir": str(dataset), "max_comparisons": 400, "seed": 4,
            "run_dir": str(run_dir), "pairing": "boundary",
            "pairing_params": {"min_comparisons": 2}, "target_grade_certainty": 0.25,
        },
    )  # fmt: skip
    record = json.loads((run_dir / "batch.json").read_text())
    meta = _metadata(engine, record["cj_batch_id"])
    assert meta["run"]["pairing"]["name"] == "boundary"
    assert meta["run"]["pairing"]["params"]["min_comparisons"] == 2
    assert meta["completion_reason"] == "target_grade_certainty"
    engine.dispose()


def test_the_pipeline_refuses_an_unknown_pairing_before_any_notebook_runs(tmp_path):
    from cjlib.pipeline import run_pipeline

    with pytest.raises(UsageError, match="unknown pairing strategy 'swiss'"):
        run_pipeline(
            database_url=f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            output_dir=tmp_path / "runs",
            extra_parameters={"pairing": "swiss"},
        )
    with pytest.raises(UsageError, match="pairing_params must be a JSON object"):
        run_pipeline(
            database_url=f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            output_dir=tmp_path / "runs",
            extra_parameters={"pairing": "adaptive", "pairing_params": [1]},
        )
    with pytest.raises(UsageError, match="target grade certainty must be a number in"):
        run_pipeline(
            database_url=f"sqlite:///{tmp_path / 'cj.sqlite3'}",
            output_dir=tmp_path / "runs",
            extra_parameters={"target_grade_certainty": 0},
        )
    assert not (tmp_path / "runs").exists()

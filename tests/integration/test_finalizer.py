"""BatchFinalizer: one transaction, idempotent, safe under races, honest on failure."""

from __future__ import annotations

import threading

import pytest

from cjlib.db import get_engine
from cjlib.workflow import BatchFinalizer, execute_batch
from cjlib.workflow.finalizer import STEPS, FinalizationError
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
    return small_dataset(tmp_path_factory.mktemp("fin"), n_students=16)


def _waiting_batch(engine, dataset) -> int:
    register(engine, dataset)
    run = execute_batch(
        engine,
        assignment_id=ASSIGNMENT,
        course_id=COURSE,
        batch_label="fin",
        max_comparisons=80,
        dataset=dataset,
        seed=5,
        output_dir=None,
        judge_params={"error_rate": 0.0},
        finalize=False,
    )
    assert run.state == "WAITING_CALLBACKS"
    return run.cj_batch_id


class _Fault(RuntimeError):
    pass


@pytest.mark.parametrize("step", STEPS)
def test_fault_in_any_step_leaves_no_partial_writes(engine, dataset, step):
    b = _waiting_batch(engine, dataset)
    history_before = transitions(engine, b)

    def hook(name: str) -> None:
        if name == step:
            raise _Fault(f"injected at {name}")

    with pytest.raises(FinalizationError, match=f"injected at {step}"):
        BatchFinalizer(engine, fault_hook=hook).finalize_scoring(b)
    assert count(engine, "grade_projections") == 0
    assert count(engine, "event_outbox") == 0
    assert count(engine, "cj_processed_essays", "current_bt_score IS NOT NULL") == 0
    assert transitions(engine, b) == [*history_before, "FAILED"]
    upload = rows(engine, "SELECT status, completed_at, processing_metadata FROM cj_batch_uploads")[
        0
    ]
    assert upload.status == "ERROR_PROCESSING"
    assert upload.completed_at is None
    meta = as_dict(upload.processing_metadata)
    assert f"injected at {step}" in meta["failure_reason"]
    assert "completion_reason" not in meta
    reason = rows(engine, "SELECT reason FROM cj_batch_state_transitions ORDER BY id DESC")[0][0]
    assert f"injected at {step}" in reason


def test_finalize_twice_leaves_one_projection_set_and_two_events(engine, dataset):
    b = _waiting_batch(engine, dataset)
    first = BatchFinalizer(engine).finalize_scoring(b)
    second = BatchFinalizer(engine).finalize_scoring(b)
    assert not first.already_final and second.already_final
    assert count(engine, "grade_projections") == first.projection_count == 16
    assert count(engine, "event_outbox") == 2
    assert transitions(engine, b).count("COMPLETED") == 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_racing_finalizers_on_postgres_write_once(db_url, dataset):
    setup = get_engine(db_url)
    b = _waiting_batch(setup, dataset)
    barrier = threading.Barrier(3)
    results, errors = [], []

    def worker() -> None:
        engine = get_engine(db_url)  # each thread its own pool and connection
        try:
            barrier.wait()
            for _ in range(2):
                results.append(BatchFinalizer(engine).finalize_scoring(b))
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(not r.already_final for r in results) == 1
    assert count(setup, "grade_projections") == 16
    assert count(setup, "event_outbox") == 2
    assert transitions(setup, b)[-3:] == ["WAITING_CALLBACKS", "SCORING", "COMPLETED"]
    setup.dispose()


def test_finalizer_records_a_fit_that_did_not_converge(engine, dataset, monkeypatch):
    import dataclasses

    from cjlib.diagnostics import inspect_batch
    from cjlib.workflow import finalizer

    fit = finalizer.fit_bradley_terry

    def unconverged(*args, **kwargs):
        return dataclasses.replace(fit(*args, **kwargs), converged=False, iterations=50)

    monkeypatch.setattr(finalizer, "fit_bradley_terry", unconverged)
    b = _waiting_batch(engine, dataset)
    result = BatchFinalizer(engine).finalize_scoring(b)
    assert result.bt_converged is False
    stats = inspect_batch(engine, b).to_dict()["statistics"]
    assert stats["bt_converged"] is False and stats["bt_iterations"] == 50


def test_finalize_unknown_batch_is_a_clear_error(engine):
    from cjlib.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no CJ batch with id 999"):
        BatchFinalizer(engine).finalize_scoring(999)


def test_finalizer_stores_the_estimator_and_its_statistics_and_inspect_reports_them(
    engine, dataset
):
    from cjlib.diagnostics import inspect_batch
    from cjlib.scoring import DEFAULT_METHOD

    b = _waiting_batch(engine, dataset)
    result = BatchFinalizer(engine).finalize_scoring(b)
    assert result.bt_method == DEFAULT_METHOD == "firth"
    meta = as_dict(
        rows(engine, "SELECT processing_metadata FROM cj_batch_uploads WHERE id = :b", b=b)[0][0]
    )
    assert meta["bt_method"] == "firth" and meta["reliability_name"] == "mle_rel"
    assert result.bt_converged is True
    assert meta["bt_converged"] is True and meta["bt_iterations"] > 0
    assert meta["split_half"]["n_splits"] == 20
    assert -1.0 <= meta["split_half"]["spearman_brown"] <= 1.0
    assert isinstance(meta["misfit_judges"], list)
    stats = inspect_batch(engine, b).to_dict()["statistics"]
    assert stats["reliability"] == pytest.approx(result.reliability)
    assert stats["reliability_name"] == "mle_rel" and stats["bt_method"] == "firth"
    assert stats["bt_converged"] is True

"""Importing human decisions as finalized batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from cjlib.cli.judgements import app as judgements_app
from cjlib.db.models import CJProcessedEssay
from cjlib.db.repository import bulk_create_cj_processed_essays, create_batch_upload
from cjlib.diagnostics import health_alerts, inspect_batch
from cjlib.errors import DatasetError, JudgementFileError, UsageError
from cjlib.importing import read_judgement_file
from cjlib.scoring import fit_bradley_terry
from cjlib.workflow import imports as imports_module
from cjlib.workflow.imports import import_judgements
from tests.integration.workflow_helpers import as_dict, count, rows, transitions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "judgements"
IDS = {"assignment_id": "imported", "course_id": "ENG5", "batch_label": "panel-2024"}
TABLES = (
    "cj_batch_uploads",
    "cj_batch_states",
    "cj_batch_state_transitions",
    "cj_processed_essays",
    "cj_comparison_pairs",
    "assessment_instructions",
    "grade_projections",
    "event_outbox",
)


def _nothing_written(engine) -> bool:
    return all(count(engine, table) == 0 for table in TABLES)


def test_imported_batch_is_complete_with_projections_from_anchors(engine):
    decisions = read_judgement_file(FIXTURES / "nmm_export.csv")
    result = import_judgements(engine, decisions, anchors=FIXTURES / "anchors.csv", **IDS)
    batch = result.cj_batch_id
    assert (result.finalization.status, result.finalization.state) == (
        "COMPLETE_STABLE",
        "COMPLETED",
    )
    assert transitions(engine, batch) == [
        "INITIALIZING", "GENERATING_PAIRS", "WAITING_CALLBACKS", "SCORING", "COMPLETED",
    ]  # fmt: skip
    assert (result.comparisons, result.essays, result.anchors, result.judges) == (32, 8, 3, 3)
    assert (result.excluded, result.duplicates, result.rows_read) == (2, 1, 35)
    assert count(engine, "cj_comparison_pairs", "cj_batch_id = :b", b=batch) == 32
    # Anchors flagged by the column, with metadata agreeing; grades projected for students.
    essays = rows(
        engine,
        "SELECT els_essay_id, is_anchor, processing_metadata FROM cj_processed_essays "
        "WHERE cj_batch_id = :b ORDER BY els_essay_id",
        b=batch,
    )
    anchors = {r.els_essay_id for r in essays if r.is_anchor}
    assert anchors == {"a1", "a2", "a3"}
    assert all(as_dict(r.processing_metadata)["is_anchor"] is bool(r.is_anchor) for r in essays)
    assert as_dict(essays[0].processing_metadata)["anchor_grade"] == "E+"
    projected = {r[0] for r in rows(engine, "SELECT els_essay_id FROM grade_projections")}
    assert projected == {"s1", "s2", "s3", "s4", "s5"}
    inspection = inspect_batch(engine, batch)
    assert inspection.health == "ok" and not inspection.anchor_disagreements
    assert inspection.comparisons_agree


def test_stored_theta_equals_fit_bradley_terry_with_the_batch_method(engine):
    decisions = read_judgement_file(FIXTURES / "nmm_export.csv")
    result = import_judgements(engine, decisions, **IDS)
    upload_meta = as_dict(
        rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0].processing_metadata
    )
    # The finalizer's method, stored with the batch: the library default (Firth).
    assert upload_meta["bt_method"] == result.finalization.bt_method == "firth"
    assert upload_meta["completion_reason"] == "imported"
    fit = fit_bradley_terry(decisions.decisions, method=upload_meta["bt_method"])
    stored = pd.DataFrame(
        rows(
            engine,
            "SELECT els_essay_id, current_bt_score, current_bt_se, comparison_count "
            "FROM cj_processed_essays",
        ),
        columns=["essay", "theta", "se", "n"],
    ).set_index("essay")
    stored = stored.loc[fit.scores.index]
    np.testing.assert_allclose(stored["theta"], fit.scores["theta"], atol=1e-6)
    np.testing.assert_allclose(stored["se"], fit.scores["se"], rtol=1e-6)
    assert stored["n"].tolist() == fit.scores["n_comparisons"].tolist()


def test_an_essay_that_won_everything_gets_a_finite_firth_score(engine, tmp_path):
    path = tmp_path / "one_sided.csv"
    path.write_text("winner,loser\ns1,s2\ns1,s3\ns2,s3\ns3,s4\n", encoding="utf-8")
    decisions = read_judgement_file(path)
    result = import_judgements(engine, decisions, **IDS)
    assert result.finalization.bt_method == "firth"
    fit = fit_bradley_terry(decisions.decisions, method="firth")
    stored = dict(rows(engine, "SELECT els_essay_id, current_bt_score FROM cj_processed_essays"))
    for essay, theta in fit.scores["theta"].items():
        assert np.isfinite(theta)
        assert stored[essay] == pytest.approx(theta, abs=1e-6)


def test_unconnected_groups_fall_back_to_ridge_and_say_so(engine, tmp_path):
    path = tmp_path / "two_groups.csv"
    path.write_text("winner,loser\ns1,s2\ns2,s1\ns3,s4\ns4,s3\n", encoding="utf-8")
    decisions = read_judgement_file(path)
    result = import_judgements(engine, decisions, **IDS)
    assert result.finalization.bt_method == "ridge" and result.finalization.bt_alpha > 0
    meta = as_dict(
        rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0].processing_metadata
    )
    assert "unconnected" in meta["bt_method_reason"]
    fit = fit_bradley_terry(decisions.decisions, method="ridge", alpha=result.finalization.bt_alpha)
    stored = dict(rows(engine, "SELECT els_essay_id, current_bt_score FROM cj_processed_essays"))
    for essay, theta in fit.scores["theta"].items():
        assert stored[essay] == pytest.approx(theta, abs=1e-6)


def test_pairs_keep_positions_decision_ids_times_and_task(engine):
    decisions = read_judgement_file(FIXTURES / "nmm_export.csv")
    result = import_judgements(engine, decisions, **IDS)
    pairs = rows(
        engine,
        "SELECT essay_a_els_id, essay_b_els_id, winner, judge_id, completed_at, submitted_at, "
        "processing_metadata FROM cj_comparison_pairs ORDER BY id",
    )
    expected = pd.read_csv(FIXTURES / "expected.csv", dtype=str)
    assert [p.essay_a_els_id for p in pairs] == expected["essay_a_id"].tolist()
    assert [p.essay_b_els_id for p in pairs] == expected["essay_b_id"].tolist()
    winners = [p.essay_a_els_id if p.winner == "essay_a" else p.essay_b_els_id for p in pairs]
    assert winners == expected["winner_id"].tolist()
    assert [p.judge_id for p in pairs] == expected["judge_id"].tolist()
    meta = [as_dict(p.processing_metadata) for p in pairs]
    assert [m["decision_id"] for m in meta] == expected["decision_id"].tolist()
    assert [m["seconds_taken"] for m in meta] == pytest.approx(
        expected["seconds_taken"].astype(float).tolist()
    )
    assert {m["task"] for m in meta} == {"essay-2024"}
    assert all(m["position_known"] is True for m in meta)
    completed = pd.Timestamp(str(pairs[1].completed_at))
    submitted = pd.Timestamp(str(pairs[1].submitted_at))
    if completed.tzinfo is None:  # SQLite hands the stored naive UTC text back
        completed, submitted = completed.tz_localize("UTC"), submitted.tz_localize("UTC")
    assert completed == pd.Timestamp("2024-03-01T09:07:00Z")
    assert (completed - submitted).total_seconds() == pytest.approx(15.5)
    assert result.positions_known


def test_without_anchors_batch_completes_without_projections_and_is_healthy(engine):
    result = import_judgements(engine, read_judgement_file(FIXTURES / "won_lost.csv"), **IDS)
    assert result.finalization.status == "COMPLETE_STABLE"
    assert result.finalization.projection_unavailable_reason == "no_anchors"
    assert count(engine, "grade_projections") == 0
    assert count(engine, "cj_processed_essays", "current_bt_score IS NOT NULL") == 8
    assert inspect_batch(engine, result.cj_batch_id).health == "ok"
    report = health_alerts(engine)
    assert not report.firing and report.health_counts["ok"] == 1
    assert report.health_counts["failed"] == 0
    # Positions unknown: stored winner-first and flagged, so no reader mistakes them for real.
    pairs = rows(engine, "SELECT winner, processing_metadata FROM cj_comparison_pairs")
    assert {p.winner for p in pairs} == {"essay_a"}
    assert all(as_dict(p.processing_metadata)["position_known"] is False for p in pairs)
    upload = rows(engine, "SELECT processing_metadata FROM cj_batch_uploads")[0]
    assert as_dict(upload.processing_metadata)["import"]["positions_known"] is False


def test_essay_texts_from_a_folder_are_stored(engine, tmp_path):
    folder = tmp_path / "essays"
    folder.mkdir()
    for essay in ("a1", "a2", "a3", "s1", "s2", "s3", "s4", "s5"):
        (folder / f"{essay}.txt").write_text(f"The essay {essay}.", encoding="utf-8")
    decisions = read_judgement_file(FIXTURES / "won_lost.csv")
    import_judgements(engine, decisions, essays_dir=folder, **IDS)
    stored = rows(
        engine,
        "SELECT e.els_essay_id, e.assessment_input_text, c.content FROM cj_processed_essays e "
        "JOIN cj_content c ON c.text_storage_id = e.text_storage_id ORDER BY e.els_essay_id",
    )
    assert tuple(stored[0]) == ("a1", "The essay a1.", "The essay a1.")
    assert len(stored) == 8


def test_a_second_import_of_the_same_texts_reuses_the_content_store(engine, tmp_path):
    folder = tmp_path / "essays"
    folder.mkdir()
    for essay in ("a1", "a2", "a3", "s1", "s2", "s3", "s4", "s5"):
        (folder / f"{essay}.txt").write_text(f"Text {essay}", encoding="utf-8")
    decisions = read_judgement_file(FIXTURES / "won_lost.csv")
    import_judgements(engine, decisions, essays_dir=folder, **IDS)
    import_judgements(engine, decisions, essays_dir=folder, **{**IDS, "batch_label": "again"})
    assert count(engine, "cj_content") == 8
    assert count(engine, "cj_batch_uploads") == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"anchors": FIXTURES / "bad_anchors_unknown_id.csv"}, JudgementFileError,
         "anchor ids never appear in"),
        ({"anchors": FIXTURES / "bad_anchors_unknown_grade.csv"}, JudgementFileError,
         "grade A++ is not an anchor grade on eng5_np_legacy_9_step"),
        ({"anchors": {"a1": "F"}}, JudgementFileError, "grade F is not an anchor grade"),
        ({"grade_scale": "no_such_scale"}, UsageError, "unknown grade scale"),
        ({"method": "bayes"}, UsageError, "method 'bayes'"),
        ({"batch_label": ""}, UsageError, "--batch-label is empty"),
        ({"assignment_id": "x" * 101}, UsageError, "--assignment-id is 101 characters"),
    ],
)  # fmt: skip
def test_bad_input_writes_nothing(engine, kwargs, error, message):
    decisions = read_judgement_file(FIXTURES / "nmm_export.csv")
    with pytest.raises(error) as err:
        import_judgements(engine, decisions, **{**IDS, **kwargs})
    assert message in str(err.value)
    assert _nothing_written(engine)


def test_missing_essay_texts_write_nothing(engine, tmp_path):
    folder = tmp_path / "essays"
    folder.mkdir()
    (folder / "a1.txt").write_text("only one", encoding="utf-8")
    decisions = read_judgement_file(FIXTURES / "won_lost.csv")
    with pytest.raises(DatasetError, match="has no text for essays a2, a3, s1, s2, s3"):
        import_judgements(engine, decisions, essays_dir=folder, **IDS)
    assert _nothing_written(engine)


def test_ids_too_long_for_the_database_write_nothing(engine, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(f"winner,loser\ns1,s2\n{'x' * 101},s1\n", encoding="utf-8")
    with pytest.raises(JudgementFileError, match="winner_id longer than 100 characters in rows 3"):
        import_judgements(engine, read_judgement_file(path), **IDS)
    assert _nothing_written(engine)


def test_grade_scale_must_agree_with_the_registered_assignment(engine):
    decisions = read_judgement_file(FIXTURES / "won_lost.csv")
    import_judgements(engine, decisions, grade_scale="swedish_6", **IDS)
    with pytest.raises(UsageError, match="registered on grade scale 'swedish_6'"):
        import_judgements(engine, decisions, grade_scale="eng5_np_legacy_9_step", **IDS)
    assert count(engine, "cj_batch_uploads") == 1


def test_a_failure_while_writing_rolls_everything_back(engine, monkeypatch):
    real = imports_module.insert_columns

    def failing(session, table, data):
        real(session, table, data)  # the pairs are written, then the transaction fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports_module, "insert_columns", failing)
    decisions = read_judgement_file(FIXTURES / "nmm_export.csv")
    with pytest.raises(RuntimeError, match="disk full"):
        import_judgements(engine, decisions, anchors=FIXTURES / "anchors.csv", **IDS)
    assert _nothing_written(engine)


def test_bulk_essay_insert_keeps_the_anchor_rule(engine):
    with Session(engine) as session, session.begin():
        upload = create_batch_upload(session, assignment_id="a")
        bulk_create_cj_processed_essays(
            session,
            cj_batch_id=upload.id,
            essays=[
                {"els_essay_id": e, "text_storage_id": "k", "assessment_input_text": "",
                 "processing_metadata": meta}
                for e, meta in (("yes", {"is_anchor": "yes"}), ("no", {"is_anchor": False}),
                                ("none", {"other": 1}), ("empty", None))
            ],
        )  # fmt: skip
    with Session(engine) as session:
        essays = {e.els_essay_id: e for e in session.query(CJProcessedEssay)}
    assert {k: e.is_anchor for k, e in essays.items()} == {
        "yes": True, "no": False, "none": False, "empty": False,
    }  # fmt: skip
    assert all(e.processing_metadata["is_anchor"] is e.is_anchor for e in essays.values())
    assert essays["none"].processing_metadata["other"] == 1
    bad = {"els_essay_id": "x", "text_storage_id": "k", "assessment_input_text": "",
           "processing_metadata": {"is_anchor": "perhaps"}}  # fmt: skip
    with (
        pytest.raises(ValueError, match="must be true or false"),
        Session(engine) as session,
        session.begin(),
    ):
        upload = create_batch_upload(session, assignment_id="b")
        bulk_create_cj_processed_essays(session, cj_batch_id=upload.id, essays=[bad])
    assert count(engine, "cj_batch_uploads") == 1


# ------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------


def _cli(db_url: str, *args: str):
    return CliRunner().invoke(
        judgements_app,
        ["import", *args, "--assignment-id", "imported", "--course-id", "ENG5",
         "--batch-label", "cli", "--database-url", db_url],
    )  # fmt: skip


def test_command_imports_and_prints_json(db_url, engine):
    result = _cli(db_url, str(FIXTURES / "nmm_export.csv"), "--anchors",
                  str(FIXTURES / "anchors.csv"), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("comparisons", "essays", "judges")} == {
        "comparisons": 32, "essays": 8, "judges": 3,
    }  # fmt: skip
    assert summary["excluded"] == 2 and summary["duplicates"] == 1
    assert summary["grade_projections"] == 5
    assert count(engine, "cj_batch_uploads", "id = :b", b=summary["cj_batch_id"]) == 1


def test_command_maps_columns_and_selects_a_task(db_url, engine):
    mapping = ["winner_id=Preferred", "loser_id=Other", "judge_id=Marker"]
    columns = [part for m in mapping for part in ("--column", m)]
    result = _cli(db_url, str(FIXTURES / "custom_columns.csv"), *columns, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["judges"] == 3
    result = _cli(db_url, str(FIXTURES / "nmm_two_tasks.csv"), "--task", "letter-2024", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["task"] == "letter-2024"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad_same_both_sides.csv"], "same id on both sides ('a3') in row 6"),
        (["nmm_two_tasks.csv"], "holds 2 tasks"),
        (["nmm_export.csv", "--column", "winner_id"], "write canonical=source"),
        (["nmm_export.csv", "--anchors", "bad_anchors_unknown_id.csv"], "zz9"),
    ],
)
def test_command_bad_input_is_one_line_exit_2_and_writes_nothing(db_url, engine, args, message):
    args = [str(FIXTURES / a) if a.endswith(".csv") else a for a in args]
    result = _cli(db_url, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert _nothing_written(engine)


def test_ids_with_quotes_backslashes_tabs_and_accents_round_trip(engine):
    odd = ['Åsa "A"', "back\\slash", "tab\there", "new\nline", "plain"]
    winners = [odd[i] for i in (0, 1, 2, 3, 4, 1)]
    losers = [odd[i] for i in (1, 2, 3, 4, 0, 0)]
    frame = pd.DataFrame(
        {
            "winner_id": winners,
            "loser_id": losers,
            "judge_id": ["j\\1", None, "j\t2", "j1", "j1", "\\N"],
            "decision_id": ['q"1', "b\\2", "t\t3", "n\n4", "é5", None],
        }
    )
    result = import_judgements(engine, frame, **IDS)
    assert result.essays == 5
    pairs = rows(
        engine,
        "SELECT essay_a_els_id, essay_b_els_id, judge_id, processing_metadata "
        "FROM cj_comparison_pairs ORDER BY id",
    )
    assert [p.essay_a_els_id for p in pairs] == winners
    assert [p.essay_b_els_id for p in pairs] == losers
    assert [p.judge_id for p in pairs] == ["j\\1", None, "j\t2", "j1", "j1", "\\N"]
    ids = [as_dict(p.processing_metadata).get("decision_id") for p in pairs]
    assert ids == ['q"1', "b\\2", "t\t3", "n\n4", "é5", None]
    stored = {r[0] for r in rows(engine, "SELECT els_essay_id FROM cj_processed_essays")}
    assert stored == set(odd)

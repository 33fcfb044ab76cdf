"""The report's tables on hand-built batches."""

from __future__ import annotations

import pytest

from cjlib.report import tables
from cjlib.report.assembly import assemble_report
from cjlib.report.figures import plot_anchor_calibration
from cjlib.report.html import header_markdown, html_table
from tests.unit.report.batches import HISTORY, batch_frames


def test_position_table_gives_wilson_intervals_per_wave_and_overall():
    table = tables.position_table(batch_frames(rounds=2))
    assert list(table["wave"]) == ["1", "2", "all"]
    overall = table.iloc[-1]
    assert overall["decisions"] == 90 == table["decisions"].iloc[:-1].sum()
    assert overall["ci_low"] < overall["a_share"] < overall["ci_high"]
    assert overall["a_share"] == pytest.approx(overall["a_wins"] / 90)


def test_run_summary_and_header_show_ids_judge_budget_and_run_time():
    rep = assemble_report(batch_frames())
    summary = dict(tables.run_summary(rep).itertuples(index=False))
    assert summary["judge"] == "llm (llm-1)"
    assert summary["comparison budget"] == "200"
    assert summary["run time"] == "1 min 15 s"
    assert summary["essays"] == "4 anchors, 6 students"
    assert header_markdown(rep).startswith("## Batch unit (cj_batch_id 7)")


def test_tables_of_a_batch_without_projection_still_render():
    frames = batch_frames(projected=False)
    frames.essays.loc[frames.essays["is_anchor"], "anchor_grade"] = "C-"
    rep = assemble_report(frames)
    for table in (
        tables.anchor_check_table(rep),
        tables.inversions_table(rep),
        tables.calibration_table(rep),
        tables.accuracy_table(rep),
        tables.reliability_table(rep),
        tables.judge_fit_table(rep),
        tables.transitions_table(rep),
    ):
        assert "<table" in html_table(table)
    # The tables say why there is nothing to show instead of rendering empty.
    assert "too_few_anchor_grades" in html_table(tables.anchor_check_table(rep))
    assert "no true grades are known" in html_table(tables.accuracy_table(rep))
    assert tables.inversions_table(rep).empty and tables.calibration_table(rep).empty
    assert len(tables.transitions_table(rep)) == len(HISTORY)
    assert "projection unavailable" in str(plot_anchor_calibration(rep).axes[0].texts[0])


def test_reliability_table_names_the_estimator_its_reliability_split_half_and_misfits():
    frames = batch_frames(
        metadata={
            "bt_method": "firth",
            "bt_method_reason": "the library default",
            "reliability": 0.81,
            "reliability_name": "mle_rel",
            "sep_g_sirt": 2.2,
            "split_half": {"median": 0.7, "spearman_brown": 0.82, "split_by": "judges",
                           "n_splits": 20},
            "misfit_judges": ["judge-7"],
            "bt_converged": True,
            "bt_iterations": 7,
        }
    )  # fmt: skip
    table = tables.reliability_table(assemble_report(frames)).set_index("metric")
    assert table.loc["BT estimator", "value"] == "firth"
    assert table.loc["scale separation reliability (mle_rel)", "value"] == "0.810"
    assert table.loc["split-half reliability (Spearman–Brown)", "value"] == "0.820"
    assert (
        "20 random splits of the judges"
        in table.loc["split-half reliability (Spearman–Brown)", "meaning"]
    )
    assert table.loc["separation G (sirt sepG)", "value"] == "2.200"
    assert table.loc["misfitting judges", "value"] == "judge-7"
    assert table.loc["BT fit converged", "value"] == "yes"
    assert table.loc["BT fit converged", "meaning"] == "after 7 iterations"

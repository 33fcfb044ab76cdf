"""The human-panel parts of the report: judges, decisions over time, split-half, imports."""

from __future__ import annotations

import io
import sys
import types
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cjlib.report import tables
from cjlib.report.assembly import assemble_report
from cjlib.report.checklist import CHECKS, evaluate_checklist
from cjlib.report.figures import plot_decisions_over_time, plot_position_effect
from cjlib.report.limitations import limitations
from cjlib.report.loading import import_info, positions_known
from tests.unit.report.batches import START, batch_frames

N_JUDGES = 10


def _import_meta(*, positions_known: bool = True, anchors: int = 4) -> dict:
    return {
        "completion_reason": "budget_exhausted",
        "run": {},
        "import": {
            "source": "panel.csv",
            "task": None,
            "anchors": anchors,
            "has_texts": False,
            "positions_known": positions_known,
            "rows_read": 100,
            "decisions": 90,
            "excluded": 0,
            "duplicates": 0,
            "other_tasks": 0,
        },
    }


def _panel(*, rogue: bool = True, positions: bool = True, rounds: int = 3, **kwargs):
    """An imported batch judged by j0 … j9 in turn; j9 picks the weaker essay when ``rogue``."""
    frames = batch_frames(rounds=rounds, metadata=_import_meta(positions_known=positions), **kwargs)
    comparisons = frames.comparisons.copy()
    n = len(comparisons)
    comparisons["judge_id"] = [f"j{i % N_JUDGES}" for i in range(n)]
    comparisons["seconds_taken"] = [10.0 * (i % N_JUDGES + 1) + (i % 3) for i in range(n)]
    comparisons["completed_at"] = [START + timedelta(minutes=i) for i in range(n)]
    if rogue:
        ability = dict(zip(frames.essays["els_essay_id"], frames.essays["bt_score"], strict=True))
        rogue_rows = comparisons["judge_id"] == "j9"
        weaker_is_a = [
            ability[a] < ability[b]
            for a, b in zip(comparisons["essay_a_id"], comparisons["essay_b_id"], strict=True)
        ]
        comparisons.loc[rogue_rows, "winner"] = np.where(
            np.asarray(weaker_is_a)[rogue_rows.to_numpy()], "essay_a", "essay_b"
        )
    return replace(frames, comparisons=comparisons)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Judge misfit
# --------------------------------------------------------------------------------------------


def test_judge_misfit_flags_infit_above_mean_plus_two_sd():
    infit = [1.0] * 7 + [0.8, 2.0, 3.0, float("nan")]
    judges = pd.DataFrame({"infit": infit}, index=[f"j{i}" for i in range(11)])
    # Over the ten finite values: mean 1.28, SD (n − 1) 0.688; mean + 1 SD = 1.97 would also
    # flag j8 (2.0), mean + 2 SD = 2.66 flags only j9 (3.0). NaN (no decisions) is not flagged.
    flagged = tables.judge_misfit(judges)
    assert list(flagged.index[flagged]) == ["j9"]


def test_judge_misfit_flags_nobody_among_fewer_than_three_judges():
    judges = pd.DataFrame({"infit": [0.2, 9.0]}, index=["a", "b"])
    assert not tables.judge_misfit(judges).any()


def test_judge_misfit_prefers_the_scoring_modules_own_flag():
    judges = pd.DataFrame(
        {"infit": [1.0] * 9 + [3.0], "misfit": [True] + [False] * 9},
        index=[f"j{i}" for i in range(10)],
    )
    flagged = tables.judge_misfit(judges)
    assert list(flagged.index[flagged]) == ["j0"]


# --------------------------------------------------------------------------------------------
# Per-judge table
# --------------------------------------------------------------------------------------------


def test_judge_panel_table_counts_times_left_share_and_flags_the_rogue_judge():
    frames = _panel()
    table = tables.judge_panel_table(assemble_report(frames)).set_index("judge_id")
    comparisons = frames.comparisons
    assert set(table.index) == {f"j{i}" for i in range(N_JUDGES)}
    for judge, rows in comparisons.groupby("judge_id"):
        assert table.at[judge, "decisions"] == len(rows)
        assert table.at[judge, "median_seconds"] == pytest.approx(rows["seconds_taken"].median())
        assert table.at[judge, "left_share"] == pytest.approx((rows["winner"] == "essay_a").mean())
    assert list(table.index[table["misfit"]]) == ["j9"]
    assert table.at["j9", "infit"] > table.drop(index="j9")["infit"].max()
    assert table["decisions"].is_monotonic_decreasing


def test_judge_panel_table_without_positions_or_times_leaves_them_nan():
    frames = _panel(positions=False)
    frames = replace(frames, comparisons=frames.comparisons.drop(columns="seconds_taken"))
    table = tables.judge_panel_table(assemble_report(frames))
    assert len(table) == N_JUDGES
    assert table["left_share"].isna().all()
    assert table["median_seconds"].isna().all()
    assert table["infit"].notna().all()


def test_judge_panel_table_is_empty_when_no_decision_names_a_judge():
    frames = batch_frames()
    frames = replace(frames, comparisons=frames.comparisons.assign(judge_id=None))
    table = tables.judge_panel_table(assemble_report(frames))
    assert table.empty
    assert "misfit" in table.columns


# --------------------------------------------------------------------------------------------
# Decisions over time
# --------------------------------------------------------------------------------------------


def test_decisions_over_time_bins_every_decision():
    frames = _panel()
    fig = plot_decisions_over_time(assemble_report(frames))
    assert _png(fig).startswith(b"\x89PNG")
    bars = fig.axes[0].patches
    assert sum(bar.get_height() for bar in bars) == len(frames.decided)
    assert 5 <= len(bars) <= 40
    cumulative = fig.axes[1].lines[0].get_ydata()
    assert cumulative[-1] == len(frames.decided)


def test_decisions_over_time_says_so_when_every_decision_has_one_time():
    fig = plot_decisions_over_time(assemble_report(batch_frames()))  # all at START
    assert not fig.axes[0].axison
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "one time" in texts


# --------------------------------------------------------------------------------------------
# Split-half reliability
# --------------------------------------------------------------------------------------------


def _without_reliability_module(monkeypatch):
    # None in sys.modules makes `import cjlib.reliability` raise ImportError.
    monkeypatch.setitem(sys.modules, "cjlib.reliability", None)


def test_split_half_fallback_splits_judges_and_steps_up_the_median(monkeypatch):
    _without_reliability_module(monkeypatch)
    rep = assemble_report(_panel(rogue=False, rounds=6))
    result = tables.split_half_reliability(rep, n_splits=10)
    assert result["method"] == "cjlib.report (judges split at random)"
    assert result["judges"] == N_JUDGES and result["splits"] == 10
    r = result["median_r"]
    assert r > 0.8  # ten essays spread over 4.4 logits, 27 decisions per essay
    assert result["spearman_brown"] == pytest.approx(2 * r / (1 + r))


def test_split_half_fallback_is_low_for_coin_toss_decisions(monkeypatch):
    _without_reliability_module(monkeypatch)
    frames = _panel(rogue=False, rounds=6)
    rng = np.random.default_rng(4)
    coin = rng.choice(["essay_a", "essay_b"], size=len(frames.comparisons))
    frames = replace(frames, comparisons=frames.comparisons.assign(winner=coin))
    result = tables.split_half_reliability(assemble_report(frames), n_splits=10)
    assert result["median_r"] < 0.5


def test_split_half_uses_the_statistics_module_when_present(monkeypatch):
    calls = []

    def split_half(comparisons, *, n_splits, seed):
        calls.append((len(comparisons), set(comparisons.columns), n_splits, seed))
        return types.SimpleNamespace(median=0.7, spearman_brown=0.82, correlations=[0.7] * 3)

    monkeypatch.setitem(
        sys.modules, "cjlib.reliability", types.SimpleNamespace(split_half=split_half)
    )
    frames = _panel()
    result = tables.split_half_reliability(assemble_report(frames), n_splits=3)
    assert calls == [
        (len(frames.decided), {"essay_a_id", "essay_b_id", "winner", "judge_id"}, 3, 0)
    ]
    assert result["method"] == "cjlib.reliability.split_half"
    assert (result["median_r"], result["spearman_brown"], result["splits"]) == (0.7, 0.82, 3)
    table = dict(tables.split_half_table(assemble_report(frames), n_splits=3)[["metric", "value"]]
                 .itertuples(index=False))  # fmt: skip
    assert table["Spearman–Brown 2r / (1 + r)"] == "0.820"


# --------------------------------------------------------------------------------------------
# Imported batches elsewhere in the report
# --------------------------------------------------------------------------------------------


def test_import_table_describes_the_file_and_is_empty_for_judged_batches():
    table = dict(tables.import_table(assemble_report(_panel(positions=False))).itertuples(
        index=False))  # fmt: skip
    assert table["file"] == "panel.csv"
    assert table["positions"].startswith("unknown")
    assert tables.import_table(assemble_report(batch_frames())).empty
    assert import_info(batch_frames()) is None


def test_unknown_positions_give_no_position_share_and_no_bias_claim():
    frames = _panel(positions=False)
    # Stored winner-first, as an import without positions does.
    comparisons = frames.comparisons.assign(winner="essay_a")
    frames = replace(frames, comparisons=comparisons)
    assert not positions_known(frames)
    rep = assemble_report(frames)
    overall = tables.position_table(rep).iloc[-1]
    assert overall["decisions"] == len(comparisons) and np.isnan(overall["a_share"])
    assert tables.judge_fit_table(rep)["position_a_share"].isna().all()
    assert not plot_position_effect(rep).axes[0].axison
    caveats = " ".join(limitations(rep))
    assert "position bias of the judges cannot be measured" in caveats
    assert "won 100%" not in caveats
    assert "budget" not in caveats


def _no_anchor_import():
    frames = batch_frames(projected=False, metadata=_import_meta(anchors=0))
    essays = frames.essays.assign(is_anchor=False, metadata_is_anchor=False, anchor_grade=None)
    meta = frames.metadata | {
        "projection_available": False,
        "projection_unavailable_reason": "no_anchors",
    }
    return replace(frames, essays=essays, upload=replace(frames.upload, processing_metadata=meta))


def test_checklist_passes_projection_line_for_an_import_without_anchors():
    frames = _no_anchor_import()
    checklist = evaluate_checklist(frames, health="ok", alerts=[])
    assert checklist["passed"].all()
    assert "no_anchors" in checklist.loc[3, "evidence"]
    assert "imported without anchors" in checklist.loc[3, "evidence"]
    assert any("imported without anchors" in c for c in limitations(assemble_report(frames)))


def test_checklist_still_fails_a_judged_batch_without_anchors():
    frames = _no_anchor_import()
    meta = {k: v for k, v in frames.metadata.items() if k != "import"}
    frames = replace(frames, upload=replace(frames.upload, processing_metadata=meta))
    checklist = evaluate_checklist(frames, health="ok", alerts=[])
    assert list(checklist.loc[~checklist["passed"], "check"]) == [CHECKS[3]]


def test_split_half_prefers_the_value_the_finalizer_stored(monkeypatch):
    _without_reliability_module(monkeypatch)
    stored = {"median": 0.61, "spearman_brown": 0.757, "split_by": "judges", "n_splits": 50}
    frames = _panel()
    meta = frames.metadata | {"split_half": stored}
    frames = replace(frames, upload=replace(frames.upload, processing_metadata=meta))
    result = tables.split_half_reliability(assemble_report(frames))
    assert (result["median_r"], result["spearman_brown"], result["splits"]) == (0.61, 0.757, 50)
    assert result["method"] == "stored by the finalizer (split by judges)"

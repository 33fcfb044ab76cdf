"""The report's design check: SSR beside split-half and the null baseline, with a sentence."""

from __future__ import annotations

import math

from cjlib.design import DesignReliability
from cjlib.report.assembly import assemble_report
from cjlib.report.design_check import (
    batch_design_reliability,
    design_reliability_table,
    inflation_sentence,
)
from tests.unit.report.batches import batch_frames


def _result(ssr, split_half, null, measure="null_adjusted_ssr"):
    from cjlib.design import null_adjusted_ssr

    adjusted = null_adjusted_ssr(ssr, null)
    return DesignReliability("adaptive", 100, ssr, split_half, null, adjusted, measure)


def test_the_batch_check_uses_the_recorded_strategy_and_its_decisions():
    rep = assemble_report(
        batch_frames(rounds=3, metadata={"run": {"seed": 3, "pairing": {
            "name": "adaptive", "params": {"min_comparisons": 2}}}})
    )  # fmt: skip
    result = batch_design_reliability(rep, n_splits=3)
    assert result.strategy == "adaptive" and result.measure == "null_adjusted_ssr"
    assert result.n_comparisons == len(rep.frames.decided) == 135
    assert all(math.isfinite(x) for x in (result.ssr, result.split_half, result.null_ssr))
    table = design_reliability_table(result)
    assert list(table["metric"]) == [
        "pairing strategy",
        "scale separation reliability (SSR)",
        "split-half reliability",
        "null baseline (SSR on coin tosses)",
        "null-adjusted SSR",
    ]
    assert "used by --target-reliability" in table["meaning"].iloc[-1]


def test_a_batch_recorded_before_strategies_is_checked_as_balanced():
    result = batch_design_reliability(assemble_report(batch_frames(rounds=3)), n_splits=2)
    assert result.strategy == "balanced" and result.measure == "split_half"
    assert "used by --target-reliability" in design_reliability_table(result)["meaning"].iloc[2]


def test_the_sentence_calls_out_inflation_only_when_the_ssr_exceeds_its_baselines():
    inflated = inflation_sentence(_result(0.92, 0.70, 0.85))
    assert inflated.startswith("**Inflation visible:**")
    assert "0.92" in inflated and "0.70" in inflated and "0.85" in inflated
    assert "adaptive" in inflated
    by_null_only = inflation_sentence(_result(0.90, 0.88, 0.6))
    assert "Inflation visible" in by_null_only and "coin tosses" in by_null_only
    honest = inflation_sentence(_result(0.85, 0.83, -0.2, measure="split_half"))
    assert "Inflation" not in honest and "no sign" in honest
    assert "could not be computed" in inflation_sentence(None)

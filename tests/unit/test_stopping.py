"""Stopping rules: each fires at its documented point and names itself."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cjlib.errors import UsageError
from cjlib.stopping import (
    Progress,
    budget,
    first_reason,
    target_grade_certainty,
    target_reliability,
)

_DECISIONS = pd.DataFrame({"winner_id": ["a", "b"], "loser_id": ["b", "a"]})


def test_budget_fires_once_the_budget_is_spent():
    rule = budget(100)
    assert rule.check(Progress(99)) is None
    assert rule.check(Progress(100)) == "budget_exhausted"
    assert rule.check(Progress(130)) == "budget_exhausted"


def test_target_reliability_fires_at_the_target_of_the_given_function():
    seen = []

    def reliability(comparisons: pd.DataFrame) -> float:
        seen.append(len(comparisons))
        return 0.1 * len(comparisons)

    rule = target_reliability(0.8, reliability, min_comparisons=5)
    assert rule.check(Progress(4, comparisons=pd.concat([_DECISIONS] * 2))) is None
    assert seen == []  # not computed before min_comparisons
    assert rule.check(Progress(6, comparisons=pd.concat([_DECISIONS] * 3))) is None  # 0.6
    assert rule.check(Progress(8, comparisons=pd.concat([_DECISIONS] * 4))) == "target_reliability"
    assert rule.measure(Progress(8, comparisons=pd.concat([_DECISIONS] * 4))) == pytest.approx(0.8)


def test_target_reliability_does_not_fire_when_the_reliability_cannot_be_computed():
    def unfittable(comparisons):
        raise ValueError("disconnected")

    assert target_reliability(0.5, unfittable).check(Progress(2, comparisons=_DECISIONS)) is None
    assert target_reliability(0.5, lambda c: math.nan).check(Progress(2, _DECISIONS)) is None
    assert target_reliability(0.5, lambda c: 0.9).check(Progress(2)) is None  # no comparisons


def test_target_grade_certainty_needs_every_student_certain():
    grades = pd.DataFrame(
        {"primary_grade": ["B", "C"], "confidence_score": [0.95, 0.85], "B": [0.95, 0.15],
         "C": [0.05, 0.85]},
        index=["s1", "s2"],
    )  # fmt: skip
    assert target_grade_certainty(0.9).check(Progress(10, grade_probabilities=grades)) is None
    assert target_grade_certainty(0.85).check(Progress(10, grade_probabilities=grades)) == (
        "target_grade_certainty"
    )
    probabilities_only = grades[["B", "C"]]
    rule = target_grade_certainty(0.85)
    assert rule.measure(Progress(10, grade_probabilities=probabilities_only)) == 0.85
    assert rule.check(Progress(10)) is None
    assert rule.check(Progress(10, grade_probabilities=grades.iloc[:0])) is None


def test_first_reason_reports_the_first_rule_that_fires():
    rules = [target_reliability(0.8, lambda c: 0.9), budget(10)]
    assert first_reason(rules, Progress(10, comparisons=_DECISIONS)) == "target_reliability"
    assert first_reason(rules[::-1], Progress(10, comparisons=_DECISIONS)) == "budget_exhausted"
    assert first_reason(rules, Progress(3)) is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: budget(0), "at least 1 comparison"),
        (lambda: budget(2.5), "whole number"),
        (lambda: target_reliability(1.5, lambda c: 1.0), r"target reliability must be .* \(0, 1\]"),
        (lambda: target_reliability(0.8, 0.8), "needs a reliability function"),
        (lambda: target_grade_certainty(0), r"grade certainty must be .* \(0, 1\]"),
    ],
)
def test_bad_targets_are_refused(build, message):
    with pytest.raises(UsageError, match=message):
        build()

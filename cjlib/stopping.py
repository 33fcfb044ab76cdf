"""Stopping rules for a batch that grows in waves: each says whether to stop, and why.

Pure: a :class:`Progress` (comparisons so far, their number, the latest grade probabilities)
in, a named reason or None out. A caller checks its rules after every wave with
:func:`first_reason` and records the reason as the batch's completion reason.

Reasons: ``budget_exhausted`` (:func:`budget`), ``target_reliability``
(:func:`target_reliability`), ``target_grade_certainty`` (:func:`target_grade_certainty`).

The reliability rule takes a reliability function rather than the scale separation
reliability (SSR) of the fit: under adaptive pairing the SSR is inflated (Bramley 2015
measured SSR up to 0.89 on coin-toss decisions), so a batch must stop on a reliability the
design cannot inflate, such as split-half reliability or, in simulation, the squared
correlation with the true abilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd

from cjlib.errors import UsageError

__all__ = [
    "REASON_BUDGET",
    "REASON_GRADE_CERTAINTY",
    "REASON_RELIABILITY",
    "Budget",
    "Progress",
    "StoppingRule",
    "TargetGradeCertainty",
    "TargetReliability",
    "budget",
    "first_reason",
    "target_grade_certainty",
    "target_reliability",
]

REASON_BUDGET = "budget_exhausted"
REASON_RELIABILITY = "target_reliability"
REASON_GRADE_CERTAINTY = "target_grade_certainty"


@dataclass(frozen=True)
class Progress:
    """Where a batch stands after a wave.

    Attributes
    ----------
    n_comparisons : int
        Comparisons submitted so far.
    comparisons : pandas.DataFrame or None
        The decisions so far, in the form :func:`cjlib.scoring.fit_bradley_terry` takes.
    grade_probabilities : pandas.DataFrame or None
        One row per student: ``Projection.grades`` (its ``confidence_score`` is used), or a
        frame of grade probabilities only (one column per grade; the row maximum is used).
    """

    n_comparisons: int
    comparisons: pd.DataFrame | None = None
    grade_probabilities: pd.DataFrame | None = None


class StoppingRule(Protocol):
    """A rule: ``reason`` names it; :meth:`check` returns the reason when it fires."""

    reason: ClassVar[str]

    def measure(self, progress: Progress) -> float:
        """The quantity the rule compares with its target (NaN when not measurable)."""
        ...

    def check(self, progress: Progress) -> str | None:
        """``reason`` when the rule fires, else None."""
        ...


@dataclass(frozen=True)
class Budget:
    """Fires when ``max_comparisons`` comparisons have been submitted."""

    max_comparisons: int
    reason: ClassVar[str] = REASON_BUDGET

    def measure(self, progress: Progress) -> float:
        """Comparisons submitted."""
        return float(progress.n_comparisons)

    def check(self, progress: Progress) -> str | None:
        """``budget_exhausted`` once ``n_comparisons >= max_comparisons``."""
        return self.reason if progress.n_comparisons >= self.max_comparisons else None


@dataclass(frozen=True)
class TargetReliability:
    """Fires when ``reliability_fn(comparisons) >= target``.

    ``reliability_fn`` raising ``ValueError`` (e.g. the comparisons cannot be fitted yet) or
    returning NaN counts as not reached. Not checked before ``min_comparisons``.
    """

    target: float
    reliability_fn: Callable[[pd.DataFrame], float]
    min_comparisons: int = 0
    reason: ClassVar[str] = REASON_RELIABILITY

    def measure(self, progress: Progress) -> float:
        """The reliability of the comparisons so far (NaN when it cannot be computed)."""
        if progress.comparisons is None or progress.n_comparisons < self.min_comparisons:
            return math.nan
        try:
            return float(self.reliability_fn(progress.comparisons))
        except ValueError:
            # An early batch may not be fittable yet; that is "not reached", not an error.
            return math.nan

    def check(self, progress: Progress) -> str | None:
        """``target_reliability`` once the measured reliability is at least ``target``."""
        value = self.measure(progress)
        return self.reason if math.isfinite(value) and value >= self.target else None


@dataclass(frozen=True)
class TargetGradeCertainty:
    """Fires when every student's most probable grade has probability ≥ ``target``.

    Never fires without grade probabilities (or with no students).
    """

    target: float
    reason: ClassVar[str] = REASON_GRADE_CERTAINTY

    def measure(self, progress: Progress) -> float:
        """The smallest probability of a student's most probable grade (NaN if none)."""
        frame = progress.grade_probabilities
        if frame is None or len(frame) == 0:
            return math.nan
        if "confidence_score" in frame.columns:
            top = frame["confidence_score"].to_numpy(dtype=float)
        else:
            top = frame.select_dtypes("number").to_numpy(dtype=float).max(axis=1)
        return float(np.min(top))

    def check(self, progress: Progress) -> str | None:
        """``target_grade_certainty`` once the least certain student reaches ``target``."""
        value = self.measure(progress)
        return self.reason if math.isfinite(value) and value >= self.target else None


def _probability(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) <= 1.0):
        raise UsageError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def budget(max_comparisons: int) -> Budget:
    """Stop after ``max_comparisons`` comparisons (reason ``budget_exhausted``)."""
    if isinstance(max_comparisons, bool) or not isinstance(max_comparisons, (int, np.integer)):
        raise UsageError(
            f"the budget must be a whole number of comparisons, got {max_comparisons!r}"
        )
    if max_comparisons < 1:
        raise UsageError(f"the budget must be at least 1 comparison, got {max_comparisons}")
    return Budget(int(max_comparisons))


def target_reliability(
    target: float, reliability_fn: Callable[[pd.DataFrame], float], *, min_comparisons: int = 0
) -> TargetReliability:
    """Stop when ``reliability_fn(comparisons) >= target`` (reason ``target_reliability``).

    Parameters
    ----------
    target : float
        In (0, 1], e.g. 0.8.
    reliability_fn : callable
        Comparisons → reliability. Use one adaptivity does not inflate: split-half, or the
        simulated true reliability; not the SSR of an adaptive design.
    min_comparisons : int, default 0
        Do not compute the reliability before this many comparisons.
    """
    if not callable(reliability_fn):
        raise UsageError("target_reliability needs a reliability function comparisons -> float")
    return TargetReliability(_probability("the target reliability", target), reliability_fn,
                             int(min_comparisons))  # fmt: skip


def target_grade_certainty(target: float) -> TargetGradeCertainty:
    """Stop when every student's most probable grade has probability ≥ ``target``.

    Reason ``target_grade_certainty``. Consumes ``Progress.grade_probabilities``.
    """
    return TargetGradeCertainty(_probability("the target grade certainty", target))


def first_reason(rules: Iterable[StoppingRule], progress: Progress) -> str | None:
    """The reason of the first rule (in the order given) that fires, else None."""
    for rule in rules:
        reason = rule.check(progress)
        if reason is not None:
            return reason
    return None

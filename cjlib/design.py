"""The design study: how many comparisons, paired how, measured by simulation, in process.

For each pairing strategy × comparisons per essay × seed, :func:`run_design_study` simulates
an ENG5-shaped batch (12 anchors with expert grades, a population of students with known
ability and grade), pairs it wave by wave with the strategy (refitting Bradley–Terry between
waves for the adaptive ones), lets a simulated judge decide, and scores the result against
the truth: the true reliability (squared correlation of θ̂ with the true ability), the SSR
of the fit, a split-half reliability, the SSR of the same procedure on coin-toss decisions
(:func:`null_ssr`), and the grade projection's exact and adjacent accuracy, ECE and Brier
score. No database is touched.

The simulated judge is Bradley–Terry with a discrimination: P(A wins) = σ(D·(θ_A − θ_B));
with probability ``judge_noise`` a decision is a coin toss instead (a lapse), so
``judge_noise=1`` is the coin-toss judge of the null baseline.

A wave procedure never looks at the budget, so the batch of B comparisons is the first B
comparisons of any larger batch with the same seed: one simulated run per strategy and seed
is scored at every requested size ("checkpoints"). Formulas, the default study's table and
what it says are in ``docs/design_study.md``.

References
----------
Bramley, T. (2015). *Investigating the reliability of adaptive comparative judgment*.
Cambridge Assessment Research Report.
Bramley, T., & Vitello, S. (2019). The effect of adaptivity on the reliability coefficient in
adaptive comparative judgement. *Assessment in Education*, 26(1), 43–58.
Kinnear, G., Jones, I., & Davies, B. (2025). Comparative judgement as a research tool: a
meta-analysis of application and reliability. *Behavior Research Methods*.
Crompvoets, E. A. V., Béguin, A. A., & Sijtsma, K. On the bias and stability of the results
of comparative judgment. *Frontiers in Education*.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cjlib.defaults import (
    DEFAULT_STUDY_DISCRIMINATION,
    DEFAULT_STUDY_JUDGE_NOISE,
    DEFAULT_STUDY_PER_ESSAY,
    DEFAULT_STUDY_SEEDS,
    DEFAULT_STUDY_STRATEGIES,
    DEFAULT_STUDY_STUDENTS,
)
from cjlib.errors import DisconnectedComparisonsError, UsageError
from cjlib.grades import ENG5_ANCHOR_GRADES, ENG5_LEGACY, GradeScale, get_grade_scale
from cjlib.pairing import (
    PAIRING_STRATEGIES,
    Estimates,
    PairingState,
    PairingStrategy,
    make_strategy,
)
from cjlib.projection import evaluate_projection, project_grades
from cjlib.scoring import fit_bradley_terry
from cjlib.simulation import Population, rng_for, simulate_population

__all__ = [
    "COLUMNS",
    "DEFAULT_ALPHA",
    "DEFAULT_PER_ESSAY",
    "DEFAULT_SEEDS",
    "DEFAULT_STRATEGIES",
    "DEFAULT_STUDENTS",
    "MEASURES",
    "MEASURE_NULL_ADJUSTED",
    "MEASURE_SPLIT_HALF",
    "DesignReliability",
    "bt_judge",
    "check_study_setting",
    "coin_toss_judge",
    "comparisons_needed",
    "conclusions",
    "design_reliability",
    "honest_reliability",
    "null_adjusted_ssr",
    "null_ssr",
    "reliability_measure",
    "run_design_study",
    "simulate_design",
    "split_half_reliability",
    "strategy_estimates",
    "summarise",
    "warm_up",
    "write_study_csv",
]

logger = logging.getLogger(__name__)

# The study's defaults live in cjlib.defaults (the CLI reads them without loading this module).
DEFAULT_STRATEGIES = DEFAULT_STUDY_STRATEGIES
DEFAULT_PER_ESSAY = DEFAULT_STUDY_PER_ESSAY
DEFAULT_SEEDS = DEFAULT_STUDY_SEEDS
DEFAULT_STUDENTS = DEFAULT_STUDY_STUDENTS
DEFAULT_DISCRIMINATION = DEFAULT_STUDY_DISCRIMINATION
DEFAULT_JUDGE_NOISE = DEFAULT_STUDY_JUDGE_NOISE
#: L2 penalty of every Bradley–Terry fit in the study: small, so the estimates exist from the
#: first wave on (a sparse or coin-toss batch has no maximum-likelihood estimate).
DEFAULT_ALPHA = 0.03

#: Columns of the study frame, one row per run (strategy × per_essay × seed).
COLUMNS: tuple[str, ...] = (
    "strategy", "per_essay", "seed", "comparisons", "true_reliability", "ssr", "split_half",
    "null_ssr", "exact_accuracy", "adjacent_accuracy", "ece", "brier", "seconds",
)  # fmt: skip
#: The measures a study reports (higher is better except ``ece`` and ``brier``).
MEASURES: tuple[str, ...] = (
    "true_reliability", "ssr", "split_half", "null_ssr",
    "exact_accuracy", "adjacent_accuracy", "ece", "brier",
)  # fmt: skip

#: A simulated judge: indices of the essays in positions A and B, and a generator, in; whether
#: A wins, out. It must draw ``rng.random((len(a), 2))`` so a shorter wave is a prefix.
Decide = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def bt_judge(
    ability: np.ndarray, *, discrimination: float = 1.0, judge_noise: float = 0.0
) -> Decide:
    """A Bradley–Terry judge with lapses.

    P(A wins) = σ(D·(θ_A − θ_B)) with probability 1 − ``judge_noise``, ½ otherwise.
    """
    ability = np.asarray(ability, dtype=float)
    if not 0.0 <= judge_noise <= 1.0:
        raise UsageError(
            f"judge_noise is a share of coin-toss decisions in [0, 1], got {judge_noise}"
        )

    def decide(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((len(a), 2))
        p_a = 1.0 / (1.0 + np.exp(-discrimination * (ability[a] - ability[b])))
        p_a = np.where(u[:, 0] < judge_noise, 0.5, p_a)
        return u[:, 1] < p_a

    return decide


def coin_toss_judge() -> Decide:
    """A judge whose every decision is a fair coin toss."""
    return _coin


def _coin(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.random((len(a), 2))[:, 1] < 0.5


# The study's calls into scoring and projection, kept in one place.
def _fit(comparisons: pd.DataFrame, alpha: float):
    return fit_bradley_terry(comparisons, alpha=alpha)


def _project(scores: pd.DataFrame, anchor_grades: Mapping, scale: GradeScale):
    # The study measures what a projection would be worth even where a batch refuses one
    # (too little information), so the curves reach down to 3 comparisons per essay.
    return project_grades(scores, anchor_grades, scale=scale, min_reliability=0)


def _ssr(comparisons: pd.DataFrame) -> float:
    """The SSR a batch would report: the library estimator's (Firth) MLE-type reliability.

    The study's ridge fits give θ for pairing and grading; their EAP-type reliability is not
    ≈ 0 on coin tosses (≈ 0.5 at α = 0.03), so the SSR columns come from the estimator
    batches use. NaN when the comparisons do not connect the essays.
    """
    try:
        return float(fit_bradley_terry(comparisons).reliability)
    except DisconnectedComparisonsError:
        return math.nan


def strategy_estimates(
    strategy: PairingStrategy,
    comparisons: pd.DataFrame,
    anchor_grades: Mapping,
    scale: str | GradeScale,
    alpha: float = DEFAULT_ALPHA,
    *,
    scores: pd.DataFrame | None = None,
) -> Estimates:
    """The :class:`~cjlib.pairing.Estimates` ``strategy`` pairs its next wave on.

    A Bradley–Terry fit (penalty ``alpha``) of ``comparisons`` — or ``scores``, a fit of them
    the caller already made; for a strategy that ``uses_boundaries``, with the grade
    boundaries of ``project_grades(scores, anchor_grades, scale=scale).calibration``. The
    design study and the batch runner both call this between waves.

    Raises
    ------
    ProjectionUnavailable
        ``boundary`` pairing and the anchors cannot place the grades (e.g. not yet compared).
    """
    if scores is None:
        scores = _fit(comparisons, alpha).scores
    if not strategy.uses_boundaries:
        return Estimates.from_scores(scores)
    calibration = _project(scores, anchor_grades, get_grade_scale(scale)).calibration
    return Estimates.from_scores(scores, calibration)


def _as_frame(
    ids: np.ndarray, a: list[int], b: list[int], a_wins: list[np.ndarray]
) -> pd.DataFrame:
    wins = np.concatenate(a_wins) if a_wins else np.zeros(0, dtype=bool)
    return pd.DataFrame(
        {
            "essay_a_id": ids[np.asarray(a, dtype=int)],
            "essay_b_id": ids[np.asarray(b, dtype=int)],
            "winner": np.where(wins, "essay_a", "essay_b"),
        }
    )


def _grow(
    strategy: PairingStrategy,
    essay_ids: Sequence[Hashable],
    decide: Decide,
    checkpoints: Sequence[int],
    *,
    seed: int,
    stream: str,
    anchor_grades: Mapping,
    scale: GradeScale,
    alpha: float,
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    """Run the wave procedure; yield (checkpoint, first-checkpoint comparisons, seconds)."""
    ids = np.asarray(list(essay_ids), dtype=object)
    index = {e: k for k, e in enumerate(ids)}
    wave_size = strategy.wave_size(len(ids))
    state = PairingState()
    a_idx: list[int] = []
    b_idx: list[int] = []
    a_wins: list[np.ndarray] = []
    pending = sorted(set(checkpoints))
    estimates = None
    wave = 0
    start = time.perf_counter()
    while pending:
        wave += 1
        n_pairs = min(wave_size, pending[-1] - len(a_idx))
        pairs = strategy.next_wave(
            list(ids), n_pairs, state, seed=seed, wave=wave, anchors=anchor_grades,
            estimates=estimates,
        )  # fmt: skip
        a = np.array([index[p[0]] for p in pairs], dtype=int)
        b = np.array([index[p[1]] for p in pairs], dtype=int)
        a_wins.append(decide(a, b, rng_for("design", stream, seed, strategy.name, wave)))
        a_idx += a.tolist()
        b_idx += b.tolist()
        while pending and len(a_idx) >= pending[0]:
            n = pending.pop(0)
            frame = _as_frame(ids, a_idx, b_idx, a_wins).iloc[:n].reset_index(drop=True)
            yield n, frame, time.perf_counter() - start
        # Estimates only once the strategy's warm-up is over: a fit before every essay is
        # compared would leave essays (and anchors, for the boundaries) unplaced.
        warm = min(state.comparisons(e) for e in ids) >= warm_up(strategy)
        if pending and strategy.uses_estimates and warm:
            estimates = strategy_estimates(
                strategy, _as_frame(ids, a_idx, b_idx, a_wins), anchor_grades, scale, alpha
            )


def warm_up(strategy: PairingStrategy) -> int:
    """Comparisons every essay needs before ``strategy`` gets estimates (at least 1).

    Before that a fit would leave essays (and, for the boundaries, anchors) unplaced; the
    strategy pairs those waves as ``balanced`` does.
    """
    return max(1, int(strategy.params.get("min_comparisons", 0)))


def _strategy(strategy: str | PairingStrategy) -> PairingStrategy:
    return make_strategy(strategy) if isinstance(strategy, str) else strategy


def simulate_design(
    strategy: str | PairingStrategy,
    essay_ids: Sequence[Hashable],
    decide: Decide,
    n_comparisons: int,
    *,
    seed: int,
    anchor_grades: Mapping | None = None,
    scale: str | GradeScale = ENG5_LEGACY,
    alpha: float = DEFAULT_ALPHA,
    stream: str = "judge",
) -> pd.DataFrame:
    """Simulate one batch: ``n_comparisons`` decisions paired wave by wave by ``strategy``.

    Between waves an adaptive strategy gets :class:`~cjlib.pairing.Estimates` from a
    Bradley–Terry fit (penalty ``alpha``) of the decisions so far, with grade boundaries from
    :func:`~cjlib.projection.project_grades` for ``boundary``. Waves have
    ``strategy.wave_size(n)`` pairs.

    Parameters
    ----------
    strategy : str or PairingStrategy
        A name in :data:`~cjlib.pairing.PAIRING_STRATEGIES` (default parameters) or a strategy.
    essay_ids : sequence
        Every essay, anchors included.
    decide : callable
        The judge (:func:`bt_judge`, :func:`coin_toss_judge`) over indices into ``essay_ids``.
    n_comparisons : int
        Decisions wanted.
    seed : int
        Fixes pairing tie-breaks and decisions.
    anchor_grades : mapping, optional
        Anchor id → grade; needed by ``boundary``.
    scale : str or GradeScale
        Scale of ``anchor_grades``.
    alpha : float
        Penalty of the fits between waves.
    stream : str
        Names the decision random stream (the null baseline uses its own).

    Returns
    -------
    pandas.DataFrame
        ``essay_a_id``, ``essay_b_id``, ``winner`` (``essay_a`` / ``essay_b``) in order.
    """
    strat = _strategy(strategy)
    if n_comparisons < 1:
        raise UsageError(f"n_comparisons must be at least 1, got {n_comparisons}")
    if strat.uses_boundaries and not anchor_grades:
        raise UsageError(f"pairing strategy {strat.name!r} needs anchor_grades to place boundaries")
    runs = _grow(
        strat, essay_ids, decide, [n_comparisons], seed=seed, stream=stream,
        anchor_grades=dict(anchor_grades or {}), scale=get_grade_scale(scale), alpha=alpha,
    )  # fmt: skip
    return next(runs)[1]


def null_ssr(
    pairing_strategy: str | PairingStrategy,
    essays: Sequence[Hashable],
    n_comparisons: int,
    seed: int,
    *,
    anchor_grades: Mapping | None = None,
    scale: str | GradeScale = ENG5_LEGACY,
    alpha: float = DEFAULT_ALPHA,
) -> float:
    """SSR of the same pairing procedure run on coin-toss decisions.

    Re-runs the wave procedure of ``pairing_strategy`` over ``essays`` for ``n_comparisons``
    decisions, each a fair coin toss, and returns the scale separation reliability of the
    Bradley–Terry fit. Nothing is there to measure, so an honest reliability is ≈ 0 (with the
    penalty ``alpha``, below 0); what the design adds on top is inflation. Bramley (2015)
    found adaptive designs reaching 0.89 on such data.

    Parameters are those of :func:`simulate_design`.
    """
    comparisons = simulate_design(
        pairing_strategy, essays, coin_toss_judge(), n_comparisons, seed=seed,
        anchor_grades=anchor_grades, scale=scale, alpha=alpha, stream="null",
    )  # fmt: skip
    return _ssr(comparisons)


#: Which reliability a stopping rule reads under each kind of design (see
#: :func:`design_reliability`).
MEASURE_SPLIT_HALF = "split_half"
MEASURE_NULL_ADJUSTED = "null_adjusted_ssr"


def null_adjusted_ssr(ssr: float, null: float) -> float:
    """The SSR with what the design alone produces taken out: (SSR − b) / (1 − b).

    b = max(``null``, 0) is the null baseline (:func:`null_ssr`, the SSR the same pairing
    procedure reaches on coin-toss decisions), floored at 0 because a negative null SSR is an
    artefact of the penalty, not reliability a design takes away. Like a chance correction
    (Cohen's κ): 0 when the batch separates essays no better than coin tosses would under its
    design, 1 when SSR = 1; never above the SSR. NaN when b ≥ 1 or either input is NaN.
    """
    base = max(float(null), 0.0)
    if not (math.isfinite(ssr) and math.isfinite(base)) or base >= 1.0:
        return math.nan
    return (float(ssr) - base) / (1.0 - base)


def reliability_measure(strategy: str | PairingStrategy) -> str:
    """The reliability a stopping rule uses for ``strategy``: one its design cannot inflate.

    ``split_half`` for a strategy that ignores the estimates (``balanced``): its split-half
    tracks the true reliability and is ≈ 0 on coin tosses. ``null_adjusted_ssr`` for one that
    pairs on them (``adaptive``, ``boundary``), whose SSR (0.8–0.97) *and* random
    split-half (0.6–0.9) run high on coin-toss decisions (``docs/design_study.md``).
    """
    return MEASURE_NULL_ADJUSTED if _strategy(strategy).uses_estimates else MEASURE_SPLIT_HALF


@dataclass(frozen=True)
class DesignReliability:
    """A batch's reliability statistics side by side, and the one its design cannot inflate.

    Attributes
    ----------
    strategy : str
        Name of the pairing strategy the batch was paired with.
    n_comparisons : int
        Decided comparisons the statistics rest on.
    ssr : float
        Scale separation reliability of the fit (what a batch reports).
    split_half : float
        :func:`split_half_reliability`.
    null_ssr : float
        :func:`null_ssr`: the SSR of the same pairing procedure on coin-toss decisions.
    adjusted_ssr : float
        :func:`null_adjusted_ssr` of ``ssr`` and ``null_ssr``.
    measure : str
        :func:`reliability_measure` of the strategy: ``split_half`` or ``null_adjusted_ssr``.
    """

    strategy: str
    n_comparisons: int
    ssr: float
    split_half: float
    null_ssr: float
    adjusted_ssr: float
    measure: str

    @property
    def honest(self) -> float:
        """The value of ``measure``: the reliability a stopping rule compares with its target."""
        return self.split_half if self.measure == MEASURE_SPLIT_HALF else self.adjusted_ssr


def design_reliability(
    comparisons: pd.DataFrame,
    strategy: str | PairingStrategy,
    essay_ids: Sequence[Hashable],
    *,
    seed: int,
    anchor_grades: Mapping | None = None,
    scale: str | GradeScale = ENG5_LEGACY,
    alpha: float = DEFAULT_ALPHA,
    n_splits: int = 1,
) -> DesignReliability:
    """SSR, split-half and null SSR of a batch, and the reliability its design cannot inflate.

    Parameters
    ----------
    comparisons : pandas.DataFrame
        The batch's decided comparisons (``essay_a_id``, ``essay_b_id``, ``winner``).
    strategy : str or PairingStrategy
        How the batch was paired (``strategy.record()`` of the batch rebuilt with
        :func:`~cjlib.pairing.make_strategy`).
    essay_ids : sequence
        Every essay of the batch, anchors included (the null run pairs the same essays).
    seed : int
        The batch's pairing seed (the null run repeats its tie-breaks).
    anchor_grades, scale
        Anchor id → grade on ``scale``; needed by ``boundary``.
    alpha : float
        Penalty of every fit.
    n_splits : int
        Random splits of the split-half (keep small in reports: two fits each).

    Notes
    -----
    The null run re-runs the pairing procedure over ``essay_ids`` for ``len(comparisons)``
    coin-toss decisions with waves of ``strategy.wave_size(n)``; a batch run with another
    wave size is compared with a slightly different procedure.
    """
    strat = _strategy(strategy)
    n = len(comparisons)
    ssr = _ssr(comparisons) if n else math.nan
    null = (
        null_ssr(strat, essay_ids, n, seed, anchor_grades=anchor_grades, scale=scale, alpha=alpha)
        if n
        else math.nan
    )
    return DesignReliability(
        strategy=strat.name,
        n_comparisons=n,
        ssr=ssr,
        split_half=split_half_reliability(comparisons, n_splits=n_splits, seed=seed, alpha=alpha),
        null_ssr=null,
        adjusted_ssr=null_adjusted_ssr(ssr, null),
        measure=reliability_measure(strat),
    )


def honest_reliability(
    strategy: str | PairingStrategy,
    essay_ids: Sequence[Hashable],
    *,
    seed: int,
    anchor_grades: Mapping | None = None,
    scale: str | GradeScale = ENG5_LEGACY,
    alpha: float = DEFAULT_ALPHA,
    n_splits: int = 5,
    gate: float | None = None,
) -> Callable[[pd.DataFrame], float]:
    """A comparisons → reliability function for :func:`cjlib.stopping.target_reliability`.

    Under ``balanced`` pairing it is :func:`split_half_reliability` (``n_splits`` splits);
    under ``adaptive`` / ``boundary`` :func:`null_adjusted_ssr`, with the null SSR of each
    batch size computed once (:func:`null_ssr`, a re-run of the pairing procedure).

    ``gate``: the target the rule checks. The null-adjusted SSR never exceeds the SSR, so while
    the SSR is below ``gate`` the function returns NaN ("not reached") without the null run.
    """
    strat = _strategy(strategy)
    ids = list(essay_ids)
    nulls: dict[int, float] = {}

    def split_half(comparisons: pd.DataFrame) -> float:
        return split_half_reliability(comparisons, n_splits=n_splits, seed=seed, alpha=alpha)

    def adjusted(comparisons: pd.DataFrame) -> float:
        ssr = _ssr(comparisons)
        if gate is not None and not ssr >= gate:
            return math.nan
        n = len(comparisons)
        if n not in nulls:
            nulls[n] = null_ssr(strat, ids, n, seed, anchor_grades=anchor_grades, scale=scale,
                                alpha=alpha)  # fmt: skip
        return null_adjusted_ssr(ssr, nulls[n])

    return adjusted if strat.uses_estimates else split_half


def _half_correlation(comparisons: pd.DataFrame, *, seed: int, alpha: float) -> float:
    # One random split of the comparisons into halves, each fitted on its own; the
    # correlation of the two θ̂ over the essays both halves place.
    half = rng_for("split-half", seed).permutation(len(comparisons)) % 2 == 0
    first = _fit(comparisons[half], alpha).scores["theta"]
    second = _fit(comparisons[~half], alpha).scores["theta"]
    both = first.index.intersection(second.index)
    if len(both) < 3:
        return math.nan
    return float(np.corrcoef(first.loc[both], second.loc[both])[0, 1])


def _spearman_brown(r: float) -> float:
    return 2.0 * r / (1.0 + r) if r > -1.0 else -math.inf


def _split_half(comparisons: pd.DataFrame, *, seed: int, alpha: float) -> float:
    # Local fallback until cjlib.reliability.split_half is merged: one random split.
    return _spearman_brown(_half_correlation(comparisons, seed=seed, alpha=alpha))


def split_half_reliability(
    comparisons: pd.DataFrame, *, n_splits: int = 1, seed: int = 0, alpha: float = DEFAULT_ALPHA
) -> float:
    """Split-half reliability of a batch's comparisons: Spearman–Brown 2r/(1 + r).

    r is the median, over ``n_splits`` random splits of the comparisons into two halves, of
    the correlation between the θ̂ of a Bradley–Terry fit (penalty ``alpha``) of each half.
    NaN when fewer than 3 essays are placed by both halves.

    The one place cjlib computes a split-half: the design study, the stopping rule and the
    report call it, so ``cjlib.reliability.split_half`` (its ``.spearman_brown``) can replace
    this local version in one edit.

    Not protected against adaptivity: on coin-toss batches it stays ≈ 0 under ``balanced``
    pairing but reaches 0.8 under ``adaptive`` (``docs/design_study.md``).
    """
    if n_splits < 1:
        raise UsageError(f"n_splits must be at least 1, got {n_splits}")
    if len(comparisons) < 2:
        return math.nan
    rs = [_half_correlation(comparisons, seed=seed + k, alpha=alpha) for k in range(n_splits)]
    rs = [r for r in rs if math.isfinite(r)]
    return _spearman_brown(float(np.median(rs))) if rs else math.nan


def _evaluate(comparisons: pd.DataFrame, population: Population, alpha: float, seed: int) -> dict:
    fit = _fit(comparisons, alpha)
    essays = population.essays.set_index("essay_id")
    theta = fit.scores["theta"].reindex(essays.index).fillna(0.0)
    students = population.students.set_index("essay_id")["true_grade"]
    evaluation = evaluate_projection(
        _project(fit.scores, population.anchor_grades, population.scale),
        students[students.index.isin(fit.scores.index)],
    )
    return {
        "true_reliability": float(np.corrcoef(theta, essays["ability"])[0, 1] ** 2),
        "ssr": _ssr(comparisons),
        "split_half": split_half_reliability(comparisons, seed=seed, alpha=alpha),
        "exact_accuracy": evaluation.exact_agreement,
        "adjacent_accuracy": evaluation.adjacent_agreement,
        "ece": evaluation.expected_calibration_error,
        "brier": evaluation.brier_score,
    }


@dataclass(frozen=True)
class _Setting:
    strategies: tuple[PairingStrategy, ...]
    per_essay: tuple[float, ...]
    seeds: tuple[int, ...]
    students: int
    discrimination: float
    judge_noise: float
    anchors: tuple[str, ...]
    scale: GradeScale
    alpha: float


def _check_setting(
    strategies, per_essay, seeds, students, discrimination, judge_noise, anchors, scale, alpha
) -> _Setting:
    strats = tuple(_strategy(s) for s in strategies)
    if not strats:
        raise UsageError(f"name at least one pairing strategy: {', '.join(PAIRING_STRATEGIES)}")
    sizes = tuple(sorted({float(x) for x in per_essay}))
    if not sizes or sizes[0] < 1:
        raise UsageError(f"comparisons per essay must be at least 1, got {list(per_essay)}")
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if not seed_list:
        raise UsageError("the study needs at least one seed (seeds=1 or more)")
    if students < 2:
        raise UsageError(f"the study needs at least 2 students, got {students}")
    if not (math.isfinite(discrimination) and discrimination > 0):
        raise UsageError(f"discrimination must be a positive number, got {discrimination}")
    if not 0.0 <= judge_noise <= 1.0:
        raise UsageError(
            f"judge_noise is a share of coin-toss decisions in [0, 1], got {judge_noise}"
        )
    sc = get_grade_scale(scale)
    if len(set(anchors)) < 2:
        raise UsageError("the study needs anchors of at least 2 different grades")
    return _Setting(strats, sizes, seed_list, int(students), float(discrimination),
                    float(judge_noise), tuple(anchors), sc, float(alpha))  # fmt: skip


def check_study_setting(
    strategies: Sequence[str | PairingStrategy] = DEFAULT_STRATEGIES,
    per_essay: Sequence[float] = DEFAULT_PER_ESSAY,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    students: int = DEFAULT_STUDENTS,
    discrimination: float = DEFAULT_DISCRIMINATION,
    judge_noise: float = DEFAULT_JUDGE_NOISE,
) -> None:
    """Refuse a study setting :func:`run_design_study` would refuse, without running it.

    ``cj study`` calls it before it creates a run folder or starts a kernel.

    Raises
    ------
    UsageError
        As :func:`run_design_study`.
    """
    _check_setting(strategies, per_essay, seeds, students, discrimination, judge_noise,
                   ENG5_ANCHOR_GRADES, ENG5_LEGACY, DEFAULT_ALPHA)  # fmt: skip


def _run_seed(setting: _Setting, seed: int) -> list[dict]:
    population = simulate_population(setting.scale, setting.anchors, setting.students, seed=seed)
    ids = population.essays["essay_id"].tolist()
    decide = bt_judge(
        population.essays["ability"].to_numpy(),
        discrimination=setting.discrimination,
        judge_noise=setting.judge_noise,
    )
    # Whole sizes are reported as integers (3, not 3.0) in the frame and the CSV.
    checkpoints = {
        round(p * len(ids) / 2): int(p) if float(p).is_integer() else p for p in setting.per_essay
    }
    grow = dict(
        checkpoints=sorted(checkpoints), seed=seed, anchor_grades=dict(population.anchor_grades),
        scale=setting.scale, alpha=setting.alpha,
    )  # fmt: skip
    rows = []
    for strategy in setting.strategies:
        nulls = {
            n: _ssr(frame) for n, frame, _ in _grow(strategy, ids, _coin, stream="null", **grow)
        }
        for n, frame, seconds in _grow(strategy, ids, decide, stream="judge", **grow):
            start = time.perf_counter()
            measures = _evaluate(frame, population, setting.alpha, seed)
            rows.append(
                {
                    "strategy": strategy.name,
                    "per_essay": checkpoints[n],
                    "seed": seed,
                    "comparisons": n,
                    **measures,
                    "null_ssr": nulls[n],
                    "seconds": seconds + time.perf_counter() - start,
                }
            )
        logger.info("design study: seed %s, strategy %s done", seed, strategy.name)
    return rows


def run_design_study(
    strategies: Sequence[str | PairingStrategy] = DEFAULT_STRATEGIES,
    per_essay: Sequence[float] = DEFAULT_PER_ESSAY,
    seeds: int | Sequence[int] = DEFAULT_SEEDS,
    students: int = DEFAULT_STUDENTS,
    discrimination: float = DEFAULT_DISCRIMINATION,
    judge_noise: float = DEFAULT_JUDGE_NOISE,
    anchors: Sequence[str] = ENG5_ANCHOR_GRADES,
    *,
    scale: str | GradeScale = ENG5_LEGACY,
    alpha: float = DEFAULT_ALPHA,
) -> pd.DataFrame:
    """Simulate every strategy × comparisons per essay × seed and score it against the truth.

    Per seed, one population (``anchors`` near their grade centres, ``students`` drawn over
    the scale; :func:`cjlib.simulation.simulate_population`) is shared by all strategies, so
    strategies are compared on the same essays. Per strategy and seed one batch is grown to
    the largest size and scored at each size in ``per_essay`` (n·per_essay/2 comparisons, n
    essays including anchors), plus one coin-toss batch for ``null_ssr``.

    Measures per run (``COLUMNS``): ``true_reliability`` = corr(θ̂, θ)² over all essays
    (essays not yet compared count as θ̂ = 0); ``ssr`` = (var θ̂ − mean SE²)/var θ̂ of the
    fit; ``split_half`` = Spearman–Brown 2r/(1 + r) of the correlation r between fits of a
    random half of the comparisons and the other half; ``null_ssr`` (:func:`null_ssr`);
    ``exact_accuracy``, ``adjacent_accuracy``, ``ece``, ``brier`` of the projected student
    grades (:func:`cjlib.projection.evaluate_projection`); ``seconds``: wall time to
    simulate the batch up to this size and score it. Every fit uses penalty ``alpha``.

    Parameters
    ----------
    strategies : sequence of str or PairingStrategy
        Names in :data:`~cjlib.pairing.PAIRING_STRATEGIES` or built strategies.
    per_essay : sequence of float
        Comparisons per essay (each ≥ 1).
    seeds : int or sequence of int
        A count (seeds 0..N−1) or the seeds themselves.
    students : int
        Student essays per batch.
    discrimination : float
        D of the simulated judge, P(A wins) = σ(D·(θ_A − θ_B)).
    judge_noise : float
        Share of decisions that are coin tosses (0: a pure BT judge; 1: the null judge).
    anchors : sequence of str
        Grades of the anchor essays (default the 12 ENG5 anchors).
    scale : str or GradeScale
        The grade scale of ``anchors``.
    alpha : float
        L2 penalty of every Bradley–Terry fit.

    Returns
    -------
    pandas.DataFrame
        One row per run with ``COLUMNS``.

    Raises
    ------
    UsageError
        An unknown strategy, a per-essay size below 1, no seeds, fewer than 2 students or
        anchor grades, a non-positive discrimination or a judge noise outside [0, 1].
    """
    setting = _check_setting(
        strategies, per_essay, seeds, students, discrimination, judge_noise, anchors, scale, alpha
    )
    rows = [row for seed in setting.seeds for row in _run_seed(setting, seed)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_study_csv(frame: pd.DataFrame, output_dir: str | Path) -> Path:
    """Write ``design_study.csv`` (one row per run, ``COLUMNS``) into ``output_dir``."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "design_study.csv"
    frame.to_csv(path, index=False)
    return path


def summarise(frame: pd.DataFrame, measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Mean of each measure per strategy and comparisons per essay (rows), over seeds."""
    grouped = frame.groupby(["strategy", "per_essay"], sort=True)
    table = grouped[list(measures)].mean()
    table.insert(0, "runs", grouped.size())
    return table


def comparisons_needed(frame: pd.DataFrame, measure: str, target: float) -> pd.Series:
    """Comparisons per essay at which each strategy's mean ``measure`` first reaches ``target``.

    Linear interpolation of the mean curve (over seeds) between the sizes run; NaN when the
    curve never reaches the target, the smallest size when it starts above it.
    """
    means = frame.groupby(["strategy", "per_essay"])[measure].mean()
    needed = {}
    for strategy, curve in means.groupby(level="strategy"):
        x = curve.index.get_level_values("per_essay").to_numpy(dtype=float)
        y = curve.to_numpy(dtype=float)
        needed[strategy] = _first_crossing(x, y, target)
    return pd.Series(needed, name=f"per_essay_for_{measure}_{target:g}", dtype=float)


def _first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    above = np.flatnonzero(y >= target)
    if len(above) == 0:
        return math.nan
    k = above[0]
    if k == 0:
        return float(x[0])
    x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def _about(value: float) -> str:
    return "not within the sizes run" if not math.isfinite(value) else f"about {value:.0f}"


def conclusions(
    frame: pd.DataFrame,
    *,
    reliability_target: float = 0.8,
    accuracy_target: float | None = None,
    reference: str = "balanced",
    saving_target: float = 0.7,
) -> list[str]:
    """Plain-language conclusions of a design study, next to the published rules of thumb.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`run_design_study`.
    reliability_target : float, default 0.8
        True reliability asked for.
    accuracy_target : float, optional
        Exact-grade accuracy asked for; default 95 % of the best mean accuracy of
        ``reference`` (the best accuracy a balanced design reaches within the sizes run).
    reference : str, default "balanced"
        Strategy the others are compared with.
    saving_target : float, default 0.7
        A strategy "saves" when it reaches ``accuracy_target`` with at most this share of the
        reference's comparisons per essay.

    Returns
    -------
    list of str
        One sentence per finding.
    """
    means = summarise(frame)
    strategies = list(dict.fromkeys(frame["strategy"]))
    ref = reference if reference in strategies else strategies[0]
    best = means.loc[ref, "exact_accuracy"].max()
    target = float(accuracy_target) if accuracy_target is not None else round(0.95 * best, 3)
    seeds = frame["seed"].nunique()
    out = [
        f"Simulated {frame['seed'].nunique()} seed(s) × {len(strategies)} strategies × "
        f"{frame['per_essay'].nunique()} sizes; numbers are means over seeds."
    ]
    rel = comparisons_needed(frame, "true_reliability", reliability_target)
    acc = comparisons_needed(frame, "exact_accuracy", target)
    for s in strategies:
        curve = means.loc[s, "exact_accuracy"]
        at = curve.idxmax()
        rising = " and still rising at the largest size" if at == curve.index.max() else ""
        out.append(
            f"To reach exact-grade accuracy {target:.2f} you need {_about(acc[s])} comparisons "
            f"per essay with strategy {s}; for true reliability {reliability_target:.2f}, "
            f"{_about(rel[s])}. Its best mean exact accuracy is {curve.max():.2f}, at "
            f"{at:g} per essay{rising}."
        )
    for s in strategies:
        if s == ref or not (math.isfinite(acc[s]) and math.isfinite(acc[ref])):
            continue
        share = acc[s] / acc[ref]
        verdict = "meets" if share <= saving_target else "does not meet"
        out.append(
            f"{s} reaches exact accuracy {target:.2f} with {share:.0%} of {ref}'s comparisons "
            f"per essay; it {verdict} the target of at most {saving_target:.0%}."
        )
    out += _published_guidance(frame, means, strategies, ref, seeds)
    return out


def _published_guidance(
    frame: pd.DataFrame, means: pd.DataFrame, strategies: list, ref: str, seeds: int
) -> list[str]:
    out = []
    for threshold in (0.7, 0.8):
        at = comparisons_needed(frame, "ssr", threshold)
        parts = []
        for s in strategies:
            if math.isfinite(at[s]):
                true_there = np.interp(
                    at[s],
                    means.loc[s].index.to_numpy(dtype=float),
                    means.loc[s, "true_reliability"].to_numpy(dtype=float),
                )
                parts.append(f"{s} at {_about(at[s])} per essay (true reliability there "
                             f"{true_there:.2f})")  # fmt: skip
            else:
                parts.append(f"{s} not within the sizes run")
        out.append(f"Rule of thumb SSR ≥ {threshold}: reached by " + "; ".join(parts) + ".")
    sizes = means.loc[ref].index.to_numpy(dtype=float)
    ten = sizes[np.argmin(np.abs(sizes - 10))]
    forty = sizes[np.argmin(np.abs(sizes - 41))]
    row10, row40 = means.loc[(ref, ten)], means.loc[(ref, forty)]
    out.append(
        f"Kinnear, Jones & Davies (2025) found about 10 comparisons per item enough for "
        f"SSR ≥ 0.7 over 101 real sessions; here {ref} at {ten:g} per essay gives SSR "
        f"{row10['ssr']:.2f}, true reliability {row10['true_reliability']:.2f} "
        f"({'agrees' if row10['ssr'] >= 0.7 else 'does not agree'} for this judge)."
    )
    out.append(
        f"Crompvoets et al. advise about 41 comparisons per item; here {ref} at {forty:g} per "
        f"essay gives true reliability {row40['true_reliability']:.2f} and exact accuracy "
        f"{row40['exact_accuracy']:.2f}, against {row10['exact_accuracy']:.2f} at {ten:g}."
    )
    out.append(
        "Bramley (2015) measured SSR up to 0.89 on coin-toss decisions under adaptive pairing, "
        "and Bramley & Vitello (2019) an adaptive SSR of 0.97 that was 0.84 against "
        "independent data."
    )
    for s in strategies:
        if s == ref:
            continue
        top = means.loc[s].index.max()
        row, base = means.loc[(s, top)], means.loc[(ref, top)]
        mid = means.loc[(s, ten)]
        null, null_ref = means.loc[s, "null_ssr"].max(), means.loc[ref, "null_ssr"].max()
        designed = null > null_ref + 0.1
        out.append(
            f"Here {s} on coin tosses reaches a null SSR of "
            f"{null:.2f} ({ref}: {null_ref:.2f})"
            + (": the design alone manufactures reliability, as Bramley found. " if designed
               else ": no more than the reference design. ")
            + f"With real decisions its SSR minus the true reliability is "
            f"{mid['ssr'] - mid['true_reliability']:+.2f} at {ten:g} per essay and "
            f"{row['ssr'] - row['true_reliability']:+.2f} at {top:g} ({ref}: "
            f"{row10['ssr'] - row10['true_reliability']:+.2f} and "
            f"{base['ssr'] - base['true_reliability']:+.2f})."
        )  # fmt: skip
    return out

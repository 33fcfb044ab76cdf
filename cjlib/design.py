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

from cjlib.errors import UsageError
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
    "bt_judge",
    "coin_toss_judge",
    "comparisons_needed",
    "conclusions",
    "null_ssr",
    "run_design_study",
    "simulate_design",
    "summarise",
    "write_study_csv",
]

logger = logging.getLogger(__name__)

DEFAULT_STRATEGIES: tuple[str, ...] = ("balanced", "adaptive", "boundary")
DEFAULT_PER_ESSAY: tuple[int, ...] = (3, 5, 10, 20, 40)
DEFAULT_SEEDS = 4
DEFAULT_STUDENTS = 120
DEFAULT_DISCRIMINATION = 1.0
DEFAULT_JUDGE_NOISE = 0.0
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
    return project_grades(scores, anchor_grades, scale=scale)


def _estimates(
    strategy: PairingStrategy,
    comparisons: pd.DataFrame,
    anchor_grades: Mapping,
    scale: GradeScale,
    alpha: float,
) -> Estimates:
    scores = _fit(comparisons, alpha).scores
    if not strategy.uses_boundaries:
        return Estimates.from_scores(scores)
    return Estimates.from_scores(scores, _project(scores, anchor_grades, scale).calibration)


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
        warm = min(state.comparisons(e) for e in ids) >= max(1, _warm_up(strategy))
        if pending and strategy.uses_estimates and warm:
            estimates = _estimates(
                strategy, _as_frame(ids, a_idx, b_idx, a_wins), anchor_grades, scale, alpha
            )


def _warm_up(strategy: PairingStrategy) -> int:
    return int(strategy.params.get("min_comparisons", 0))


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
    return float(_fit(comparisons, alpha).reliability)


def _split_half(comparisons: pd.DataFrame, *, seed: int, alpha: float) -> float:
    # Local fallback until cjlib.reliability.split_half is merged: comparisons split at random
    # into two halves, each fitted on its own; Spearman–Brown of the correlation of the θs.
    half = rng_for("split-half", seed).permutation(len(comparisons)) % 2 == 0
    first = _fit(comparisons[half], alpha).scores["theta"]
    second = _fit(comparisons[~half], alpha).scores["theta"]
    both = first.index.intersection(second.index)
    if len(both) < 3:
        return math.nan
    r = float(np.corrcoef(first.loc[both], second.loc[both])[0, 1])
    return 2.0 * r / (1.0 + r) if r > -1.0 else -math.inf


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
        "ssr": float(fit.reliability),
        "split_half": _split_half(comparisons, seed=seed, alpha=alpha),
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
            n: float(_fit(frame, setting.alpha).reliability)
            for n, frame, _ in _grow(strategy, ids, _coin, stream="null", **grow)
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

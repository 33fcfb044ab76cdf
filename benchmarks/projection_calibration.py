"""Calibration of projected grades at 2–40 comparisons per essay on two truth generators.

For each truth generator (``cjlib.simulation.TRUTH_GENERATORS``: ``centred``, equal-width
grades with anchors at their centres; ``uneven``, unequal widths, anchors anywhere within
their grade, skewed abilities), each number of comparisons per essay and each BT estimator,
simulates ``--seed-sets`` × ``--seeds`` ENG5 batches (12 anchors, ``--students`` students;
seed set j uses seeds ``1000·j … 1000·j + seeds − 1``), projects grades and pools every
student of every batch into one evaluation. Each batch is projected twice: as shipped
(refusing below ``MIN_RELIABILITY``) and with ``min_reliability=0``, so the table shows what
the refused batches would have been given.

Columns: ``refused`` (batches refused / run), ``rel`` (range of the population-fit
reliability over the batches), pooled ``ECE`` over the projected batches of all seed sets and
its range over the seed sets (``ECE per set``), ``conf`` (mean confidence) and ``hit`` (exact
agreement), ``base`` (majority grade share), ``adj`` (adjacent agreement), ``Brier``,
``cov90`` (share of students whose true grade is inside the smallest set of grades holding
≥ 90% probability) and ``set90`` (that set's mean size), ``worst bin`` (the confidence bin of
the pooled reliability diagram, among those with ≥ 100 students, whose observed accuracy is
furthest from its mean confidence, and accuracy − confidence there: negative is
overconfident), ``worst grade`` (the same by primary grade), and the pooled ECE of all
batches projected anyway.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/projection_calibration.py``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import pandas as pd

from cjlib.errors import DisconnectedComparisonsError, ProjectionUnavailable
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import evaluate_projection, project_grades
from cjlib.scoring import fit_bradley_terry
from cjlib.simulation import TRUTH_GENERATORS, simulate_comparisons

SCALE = "eng5_np_legacy_9_step"
COUNTS = (2, 3, 5, 10, 20, 40)
#: The estimators that can be compared (``fit_bradley_terry`` arguments): Firth is the
#: library's and the finalizer's default; ridge α = 0.03 was the finalizer's fallback before
#: it; the MLE is run only where it exists. Every SE is under the sum-to-zero constraint.
#: Bins of the reliability diagram with at least this many students enter ``worst bin``.
BIG_BIN = 100
ESTIMATORS = {
    "firth": {"method": "firth"},
    "ridge0.03": {"method": "ridge", "alpha": 0.03},
    "mle": {"method": "mle"},
}


def _coverage90(probs: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    order = np.argsort(-probs, axis=1)
    sorted_p = np.take_along_axis(probs, order, axis=1)
    size = (np.cumsum(sorted_p, axis=1) < 0.9).sum(axis=1) + 1
    inside = [t in order[i, : size[i]] for i, t in enumerate(truth)]
    return float(np.mean(inside)), float(np.mean(size))


def _batch(generator: str, count: int, seed: int, name: str, n_students: int):
    population = TRUTH_GENERATORS[generator](SCALE, ENG5_ANCHOR_GRADES, n_students, seed=seed)
    comparisons = simulate_comparisons(population.essays, comparisons_per_essay=count, seed=seed)
    try:
        scores = fit_bradley_terry(comparisons, **ESTIMATORS[name]).scores.copy()
    except DisconnectedComparisonsError:
        return None
    students = population.students
    truth = pd.Series(students["true_grade"].to_numpy(), index=students["essay_id"].to_numpy())
    try:
        project_grades(scores, population.anchor_grades, scale=SCALE)
        refused = False
    except ProjectionUnavailable as err:
        assert err.reason == "too_little_information", err.reason
        refused = True
    projection = project_grades(scores, population.anchor_grades, scale=SCALE, min_reliability=0)
    return refused, projection, truth


def _evaluate(batches: list):
    grades = pd.concat(
        [b[1].grades.rename(index=lambda i, s=s: f"{s}/{i}") for s, b in enumerate(batches)]
    )
    truth = pd.concat([b[2].rename(index=lambda i, s=s: f"{s}/{i}") for s, b in enumerate(batches)])
    return (
        evaluate_projection(dataclasses.replace(batches[0][1], grades=grades), truth),
        grades,
        truth,
    )


def _row(batches: list) -> dict:
    labels = list(batches[0][1].scale.all_labels)
    evaluation, grades, truth = _evaluate(batches)
    t = np.array([labels.index(g) for g in truth.loc[grades.index]])
    cov, size = _coverage90(grades[labels].to_numpy(), t)
    table = evaluation.reliability_table
    big = table[table["n"] >= BIG_BIN]
    gaps = (big["observed_accuracy"] - big["mean_confidence"]).to_numpy()
    worst = int(np.argmax(np.abs(gaps)))
    by_grade = pd.DataFrame(
        {
            "grade": grades["primary_grade"].to_numpy(),
            "gap": (grades["primary_grade"] == truth.loc[grades.index]).to_numpy()
            - grades["confidence_score"].to_numpy(),
        }
    ).groupby("grade")["gap"]
    grade_gap = by_grade.mean()[by_grade.size() >= BIG_BIN]
    worst_grade = grade_gap.abs().idxmax() if len(grade_gap) else None
    return {
        "grade": f"{worst_grade}: {grade_gap[worst_grade]:+.3f}" if worst_grade else "–",
        "bin": f"{big['lower'].iat[worst]:.1f}–{big['upper'].iat[worst]:.1f}: {gaps[worst]:+.3f}",
        "ECE": evaluation.expected_calibration_error,
        "conf": evaluation.mean_confidence,
        "hit": evaluation.hit_rate,
        "base": evaluation.majority_baseline,
        "adj": evaluation.adjacent_agreement,
        "Brier": evaluation.brier_score,
        "cov90": cov,
        "set90": size,
    }


def _cell(generator: str, name: str, count: int, args) -> str:
    sets = [
        [
            _batch(generator, count, 1000 * j + seed, name, args.students)
            for seed in range(args.seeds)
        ]
        for j in range(args.seed_sets)
    ]
    runs = [r for s in sets for r in s]
    fitted = [r for r in runs if r is not None]
    if not fitted:
        return f"| {generator} | {name} | {count} | MLE does not exist in any batch |"
    kept = [r for r in fitted if not r[0]]
    rel = [r[1].population.reliability for r in fitted]
    anyway = _row(fitted)
    note = "" if len(fitted) == len(runs) else f" ({len(runs) - len(fitted)} no MLE)"
    head = (
        f"| {generator} | {name} | {count} | {len(fitted) - len(kept)}/{len(fitted)}{note} "
        f"| {min(rel):.2f}–{max(rel):.2f} |"
    )
    if not kept:
        return head + " refused |" + " |" * 11 + f" {anyway['ECE']:.3f} |"
    cells = _row(kept)
    per_set = [
        _row([r for r in s if r is not None and not r[0]])["ECE"]
        for s in sets
        if any(r is not None and not r[0] for r in s)
    ]
    shown = " | ".join(
        f"{cells[k]:.3f}" for k in ("ECE", "conf", "hit", "base", "adj", "Brier", "cov90", "set90")
    )
    spread = f"{min(per_set):.3f}–{max(per_set):.3f}"
    rest = " | ".join([shown.split(" | ", 1)[1], cells["bin"], cells["grade"]])
    return f"{head} {cells['ECE']:.3f} | {spread} | {rest} | {anyway['ECE']:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=12, help="batches per seed set")
    parser.add_argument("--seed-sets", type=int, default=4)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--estimators", default="firth")
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    args = parser.parse_args()
    print(
        f"{args.seed_sets} seed sets × {args.seeds} batches per cell, "
        f"12 anchors + {args.students} students each\n"
    )
    print(
        "| generator | estimator | per essay | refused | rel | ECE | ECE per set | conf | hit "
        "| base | adj | Brier | cov90 | set90 | worst bin | worst grade | ECE if projected anyway |"
    )
    print("| --- | --- |" + " ---: |" * 15)
    wall, cpu = time.perf_counter(), time.process_time()
    for generator in TRUTH_GENERATORS:
        for name in args.estimators.split(","):
            for count in map(int, args.counts.split(",")):
                print(_cell(generator, name, count, args), flush=True)
    print(
        f"\n{time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()

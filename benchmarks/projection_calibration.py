"""Calibration of projected grades at 2–40 comparisons per essay on two truth generators.

For each truth generator (``cjlib.simulation.TRUTH_GENERATORS``: ``centred``, today's
equal-width grades with anchors at their centres; ``uneven``, unequal widths, anchors spread
within their grade, skewed abilities), each number of comparisons per essay and each BT
estimator, simulates ``--seeds`` ENG5 batches (12 anchors, ``--students`` students), projects
grades and pools every student of every batch into one evaluation. Each batch is projected
twice: as shipped (refusing below ``MIN_RELIABILITY``) and with ``min_reliability=0``, so the
table shows what the refused batches would have been given.

Columns: ``refused`` (batches refused / run), ``rel`` (mean population-fit reliability),
pooled ``ECE``, ``conf`` (mean confidence) and ``hit`` (exact agreement), ``base`` (majority
grade share), ``adj`` (adjacent agreement), ``Brier``, ``cov90`` (share of students whose true
grade is inside the smallest set of grades holding ≥ 90% probability) and ``set90`` (that
set's mean size).

Run: ``.venv/bin/python benchmarks/projection_calibration.py --seeds 12``
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pandas as pd

from cjlib.errors import DisconnectedComparisonsError, ProjectionUnavailable
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import evaluate_projection, project_grades
from cjlib.scoring import fit_bradley_terry
from cjlib.simulation import TRUTH_GENERATORS, simulate_comparisons

SCALE = "eng5_np_legacy_9_step"
COUNTS = (2, 3, 5, 10, 20, 40)
#: The estimators compared (``fit_bradley_terry`` arguments): Firth is the library's and the
#: finalizer's default; ridge α = 0.03 was the finalizer's fallback before it; the MLE is run
#: only where it exists. Every SE is under the sum-to-zero constraint.
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


def _row(batches: list) -> dict:
    labels = list(batches[0][1].scale.all_labels)
    grades = pd.concat(
        [b[1].grades.rename(index=lambda i, s=s: f"{s}/{i}") for s, b in enumerate(batches)]
    )
    truth = pd.concat([b[2].rename(index=lambda i, s=s: f"{s}/{i}") for s, b in enumerate(batches)])
    evaluation = evaluate_projection(dataclasses.replace(batches[0][1], grades=grades), truth)
    t = np.array([labels.index(g) for g in truth.loc[grades.index]])
    cov, size = _coverage90(grades[labels].to_numpy(), t)
    return {
        "rel": np.mean([b[1].population.reliability for b in batches]),
        "ECE": evaluation.expected_calibration_error,
        "conf": evaluation.mean_confidence,
        "hit": evaluation.hit_rate,
        "base": evaluation.majority_baseline,
        "adj": evaluation.adjacent_agreement,
        "Brier": evaluation.brier_score,
        "cov90": cov,
        "set90": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--counts", default=",".join(map(str, COUNTS)))
    args = parser.parse_args()
    print(f"{args.seeds} batches per cell, 12 anchors + {args.students} students each\n")
    print(
        "| generator | estimator | per essay | refused | rel | ECE | conf | hit | base | adj "
        "| Brier | cov90 | set90 | ECE if projected anyway |"
    )
    print("| --- | --- |" + " ---: |" * 12)
    for generator in TRUTH_GENERATORS:
        for name in args.estimators.split(","):
            for count in map(int, args.counts.split(",")):
                runs = [
                    _batch(generator, count, seed, name, args.students)
                    for seed in range(args.seeds)
                ]
                fitted = [r for r in runs if r is not None]
                if not fitted:
                    print(f"| {generator} | {name} | {count} | MLE does not exist in any batch |")
                    continue
                kept = [r for r in fitted if not r[0]]
                anyway = _row(fitted)
                cells = _row(kept) if kept else None
                shown = (
                    " | ".join(
                        f"{cells[k]:.3f}"
                        for k in ("ECE", "conf", "hit", "base", "adj", "Brier", "cov90", "set90")
                    )
                    if cells
                    else "refused | | | | | | | "
                )
                note = "" if len(fitted) == len(runs) else f" ({len(runs) - len(fitted)} no MLE)"
                print(
                    f"| {generator} | {name} | {count} | {len(fitted) - len(kept)}/{len(fitted)}"
                    f"{note} | {anyway['rel']:.2f} | {shown} | {anyway['ECE']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

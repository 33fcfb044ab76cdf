"""Where projected grade boundaries land against the truth, and why the open grades miss.

For each truth generator (``cjlib.simulation.TRUTH_GENERATORS``) and number of comparisons
per essay, simulates ``--seeds`` ENG5 batches (12 anchors, ``--students`` students, seeds
``--first-seed …``; the study's development seeds, not the ones
``projection_calibration.py`` reports), fits Firth scores and projects grades
(``min_reliability=0``), then compares every boundary with the truth on the θ̂ scale.

The truth on the θ̂ scale: θ̂ is not the ability plus noise. Firth's estimate pulls extreme
essays in (slope 0.95 at 10 comparisons per essay, more at the ends), for students and anchors
alike, so a true boundary b sits at E[θ̂ | ability = b] on the scale students are graded on.
That curve is fitted per batch as a cubic in the ability over the students (``cubic``);
``linear`` maps by a straight line, as before this study, and attributes Firth's shrinkage
of the ends to the boundaries.

Printed per cell:

- per boundary, over batches: mean error of the projected boundary against the truth under
  both maps, its RMSE, the mean stated SE and the SD of the z-scores (error / SE; 1 is honest);
- the F+ anchors' position within their true grade (0 = centre, ±0.5 = its edges) and the
  correlation of the F/F+ boundary's error with the number of students projected into F;
- the students projected into F and A, split by the z-score of their boundary's error, with
  their mean confidence and hit rate: whether the open grades miss only when the boundary
  missed.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/projection_boundaries.py``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from cjlib.errors import DisconnectedComparisonsError
from cjlib.grades import ENG5_ANCHOR_GRADES
from cjlib.projection import project_grades
from cjlib.scoring import fit_bradley_terry
from cjlib.simulation import TRUTH_GENERATORS, simulate_comparisons

SCALE = "eng5_np_legacy_9_step"
#: Edges of the z-score buckets of the open grades' table.
Z_BUCKETS = (-np.inf, -1.0, 0.0, 1.0, 2.0, np.inf)


def _batch(generator: str, count: int, seed: int, n_students: int) -> dict | None:
    population = TRUTH_GENERATORS[generator](SCALE, ENG5_ANCHOR_GRADES, n_students, seed=seed)
    comparisons = simulate_comparisons(population.essays, comparisons_per_essay=count, seed=seed)
    try:
        scores = fit_bradley_terry(comparisons).scores
    except DisconnectedComparisonsError:
        return None
    projection = project_grades(scores, population.anchor_grades, scale=SCALE, min_reliability=0)
    essays = population.essays.set_index("essay_id").loc[scores.index]
    student = ~essays["is_anchor"].to_numpy()
    ability, theta = essays["ability"].to_numpy(), scores["theta"].to_numpy()
    bounds = np.asarray(population.boundaries)
    truth = {
        "cubic": np.polyval(np.polyfit(ability[student], theta[student], 3), bounds),
        "linear": np.polyval(np.polyfit(ability[student], theta[student], 1), bounds),
    }
    calibration = projection.calibration
    edges = np.r_[bounds[0] - 0.9, bounds, bounds[-1] + 0.9]
    f_plus = essays.index[essays["is_anchor"] & (essays["true_grade"] == "F+")]
    grade = essays.loc[f_plus, "grade_index"].to_numpy()
    position = (essays.loc[f_plus, "ability"].to_numpy() - edges[grade]) / (
        edges[grade + 1] - edges[grade]
    ) - 0.5
    return {
        "estimate": calibration["upper"].to_numpy()[:-1],
        "se": calibration["upper_se"].to_numpy()[:-1],
        "truth": truth,
        "f_plus_position": position,
        "grades": projection.grades,
        "true_grade": essays.loc[projection.grades.index, "true_grade"].to_numpy(),
    }


def _boundary_table(runs: list[dict], labels: list[str]) -> pd.DataFrame:
    estimate = np.array([r["estimate"] for r in runs])
    se = np.array([r["se"] for r in runs])
    rows = {}
    for name in ("linear", "cubic"):
        error = estimate - np.array([r["truth"][name] for r in runs])
        rows[f"mean error ({name})"] = error.mean(axis=0)
        if name == "cubic":
            rows["RMSE"] = np.sqrt((error**2).mean(axis=0))
            rows["mean SE"] = se.mean(axis=0)
            rows["SD of z"] = (error / se).std(axis=0)
    columns = [f"{labels[j]}/{labels[j + 1]}" for j in range(len(labels) - 1)]
    return pd.DataFrame(rows, index=columns).T


def _open_grade_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for run in runs:
        error = (run["estimate"] - run["truth"]["cubic"]) / run["se"]
        grades = run["grades"]
        for label, z in (("F", error[0]), ("A", -error[-1])):
            # z > 0: the boundary sits too far into the scale, so too many students look F / A.
            chosen = (grades["primary_grade"] == label).to_numpy()
            rows += [
                (label, z, c, hit)
                for c, hit in zip(
                    grades["confidence_score"].to_numpy()[chosen],
                    run["true_grade"][chosen] == label,
                    strict=True,
                )
            ]
    table = pd.DataFrame(rows, columns=["grade", "z", "confidence", "hit"])
    table["z of its boundary"] = pd.cut(table["z"], Z_BUCKETS)
    return (
        table.groupby(["grade", "z of its boundary"], observed=True)
        .agg(students=("hit", "size"), confidence=("confidence", "mean"), hit=("hit", "mean"))
        .round(3)
    )


def _markdown(table: pd.DataFrame) -> str:
    """A pipe table (no third-party formatter needed)."""
    index = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    head = "| | " + " | ".join(map(str, table.columns)) + " |"
    rule = "| --- |" + " ---: |" * len(table.columns)
    body = [
        f"| {name} | "
        + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
        + " |"
        for name, row in zip(index, table.itertuples(index=False), strict=True)
    ]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=48)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--counts", default="10,20,40")
    args = parser.parse_args()
    labels = None
    wall, cpu = time.perf_counter(), time.process_time()
    for generator in TRUTH_GENERATORS:
        for count in map(int, args.counts.split(",")):
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            runs = [r for s in seeds if (r := _batch(generator, count, s, args.students))]
            labels = labels or list(runs[0]["grades"].columns[4:])
            predicted_f = [int((r["grades"]["primary_grade"] == "F").sum()) for r in runs]
            error_f = [r["estimate"][0] - r["truth"]["cubic"][0] for r in runs]
            position = np.concatenate([r["f_plus_position"] for r in runs])
            print(f"\n## {generator}, {count} comparisons per essay ({len(runs)} batches)\n")
            print(_markdown(_boundary_table(runs, labels)))
            print(
                f"\nF+ anchors' position in their grade: mean {position.mean():+.3f}, "
                f"SD {position.std():.3f}; correlation of the F/F+ error with the number "
                f"projected into F: {np.corrcoef(error_f, predicted_f)[0, 1]:.2f}\n"
            )
            print(_markdown(_open_grade_table(runs)))
    print(
        f"\n{time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()

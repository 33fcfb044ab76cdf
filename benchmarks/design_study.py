"""Run the default design study (``cjlib.design.run_design_study``), print its table and time.

The same study ``cj study`` runs with its defaults: balanced, adaptive and boundary pairing at
3, 5, 10, 20 and 40 comparisons per essay, ENG5-shaped batches (12 anchors, 120 students), a
Bradley–Terry judge of discrimination 1, four seeds. It prints the mean of each measure per
strategy and size, the spread over seeds of the main ones, the conclusions, and the wall time
against the 3-minute target, then two checks outside the timing: the exact accuracy a perfect
ability estimate would give (the ceiling set by the anchors) and the SSR and split-half of
coin-toss batches per strategy. With ``--output-dir`` it also writes ``design_study.csv`` and
``design_study.png``.

    python benchmarks/design_study.py
    python benchmarks/design_study.py --seeds 2 --students 60 --output-dir /tmp/study

BLAS threads are limited to one before NumPy loads: the study's matrices are small (≤ a few
hundred essays), where threading only adds contention on a shared machine (measured: the
exact-SE inverse of 112 essays took 93 ms with default threads on 2 busy cores, 27 ms with one).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from cjlib import design  # noqa: E402
from cjlib.grades import ENG5_ANCHOR_GRADES, ENG5_LEGACY  # noqa: E402
from cjlib.projection import evaluate_projection, project_grades  # noqa: E402
from cjlib.simulation import simulate_population  # noqa: E402

TARGET_SECONDS = 180.0
NULL_SIZES = (10, 40)
NULL_SEEDS = (0, 1)


def null_check(students: int) -> pd.DataFrame:
    """SSR, split-half and null-adjusted SSR of coin-toss batches per strategy: honest ≈ 0.

    The batch's coin tosses come from their own stream, not the null baseline's, so the
    adjusted SSR compares two independent coin-toss runs of the same pairing procedure.
    """
    rows = []
    for seed in NULL_SEEDS:
        population = simulate_population(ENG5_LEGACY, ENG5_ANCHOR_GRADES, students, seed=seed)
        ids = population.essays["essay_id"].tolist()
        grades = dict(population.anchor_grades)
        for strategy in design.DEFAULT_STRATEGIES:
            for per_essay in NULL_SIZES:
                n = per_essay * len(ids) // 2
                comparisons = design.simulate_design(
                    strategy, ids, design.coin_toss_judge(), n, seed=seed, anchor_grades=grades,
                    stream="coin",
                )  # fmt: skip
                ssr = design._ssr(comparisons)  # the estimator batches report (Firth)
                null = design.null_ssr(strategy, ids, n, seed, anchor_grades=grades)
                rows.append(
                    {
                        "strategy": strategy,
                        "per_essay": per_essay,
                        "seed": seed,
                        "ssr": ssr,
                        "split_half": design.split_half_reliability(
                            comparisons, seed=seed, alpha=design.DEFAULT_ALPHA
                        ),
                        "null_adjusted_ssr": design.null_adjusted_ssr(ssr, null),
                    }
                )
    columns = ["ssr", "split_half", "null_adjusted_ssr"]
    return pd.DataFrame(rows).groupby(["strategy", "per_essay"])[columns].mean()


def adjusted_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The null-adjusted SSR (what --target-reliability reads under adaptive pairing) of each
    run, beside the true reliability and the split-half, means over seeds."""
    adjusted = [
        design.null_adjusted_ssr(s, n) for s, n in zip(frame["ssr"], frame["null_ssr"], strict=True)
    ]
    frame = frame.assign(null_adjusted_ssr=adjusted)
    columns = ["true_reliability", "split_half", "ssr", "null_ssr", "null_adjusted_ssr"]
    return frame.groupby(["strategy", "per_essay"])[columns].mean()


def oracle_accuracy(seeds: int, students: int) -> float:
    """Exact accuracy when every θ is known almost exactly (se 0.05): the anchors' ceiling."""
    hits = []
    for seed in range(seeds):
        population = simulate_population(ENG5_LEGACY, ENG5_ANCHOR_GRADES, students, seed=seed)
        essays = population.essays.set_index("essay_id")
        scores = pd.DataFrame({"theta": essays["ability"], "se": 0.05})
        projection = project_grades(scores, population.anchor_grades, scale=ENG5_LEGACY)
        truth = population.students.set_index("essay_id")["true_grade"]
        hits.append(evaluate_projection(projection, truth).exact_agreement)
    return float(sum(hits) / len(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=design.DEFAULT_SEEDS)
    parser.add_argument("--students", type=int, default=design.DEFAULT_STUDENTS)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--no-null-check", action="store_true", help="skip the coin-toss check")
    args = parser.parse_args()

    start = time.perf_counter()
    frame = design.run_design_study(seeds=args.seeds, students=args.students)
    elapsed = time.perf_counter() - start

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print("Mean over seeds per strategy and comparisons per essay")
    print(design.summarise(frame).round(3).to_string())
    print("\nSpread over seeds (min–max) of true reliability and exact accuracy")
    spread = frame.groupby(["strategy", "per_essay"])[["true_reliability", "exact_accuracy"]]
    print(spread.agg(["min", "max"]).round(3).to_string())
    print("\nComparisons per essay needed (interpolated on the mean curves)")
    needed = pd.DataFrame(
        {
            "true_reliability_0.8": design.comparisons_needed(frame, "true_reliability", 0.8),
            "ssr_0.8": design.comparisons_needed(frame, "ssr", 0.8),
            "split_half_0.8": design.comparisons_needed(frame, "split_half", 0.8),
        }
    )
    print(needed.round(1).to_string())
    adjusted = adjusted_table(frame)
    print("\nNull-adjusted SSR (SSR − b)/(1 − b), b = max(null SSR, 0), beside true reliability")
    print(adjusted.round(3).to_string())
    print("\nConclusions")
    for sentence in design.conclusions(frame):
        print("-", sentence)
    print(
        f"\nWall time {elapsed:.1f} s for {len(frame)} runs "
        f"(target ≤ {TARGET_SECONDS:.0f} s: {'met' if elapsed <= TARGET_SECONDS else 'MISSED'})"
    )
    print(
        "\nCeiling: exact accuracy with θ known (se 0.05), grades placed by the 12 anchors: "
        f"{oracle_accuracy(args.seeds, args.students):.3f}"
    )
    if not args.no_null_check:
        start = time.perf_counter()
        print(f"\nCoin-toss batches ({len(NULL_SEEDS)} seeds): SSR, split-half, adjusted SSR")
        print(null_check(args.students).round(3).to_string())
        print(f"({time.perf_counter() - start:.1f} s)")
    if args.output_dir is not None:
        from cjlib.design_figures import plot_design_study

        args.output_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.output_dir / "design_study.csv", index=False)
        plot_design_study(frame).savefig(args.output_dir / "design_study.png", dpi=110)
        print(f"Wrote {args.output_dir / 'design_study.csv'} and design_study.png")


if __name__ == "__main__":
    main()

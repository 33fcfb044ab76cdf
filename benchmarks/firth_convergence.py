"""Convergence of the sparse Firth path (cavity leverages) on sparse, widely spread designs.

Above ``FIRTH_EXACT_MAX_ESSAYS`` essays Firth's estimate alternates cavity leverages with the
ML fit of the augmented data (docs/scoring.md). In sparse designs whose essays are spread
widely, essays joined to the rest by one or two decisions have an almost flat modified score
with several roots, and the alternation creeps. This script fits a grid of such designs and
prints, per number of essays and comparisons per essay, how many fits converged, the Newton
steps and CPU seconds they took, and (``--exact``, at most 2,000 essays) how far, in standard
errors, the sparse estimate lies from the exact-leverage Firth estimate: the largest distance
over all essays and fits, the comparisons of the essay where it occurred, and the 99th
percentile.

Designs: ``n`` essays with θ ~ N(0, SD²), SD in 1, 1.5 and 2.5; n · k / 2 decisions between
random pairs shown in random order, the first-shown essay winning with probability
σ(θ_A − θ_B + 0.3); fitted with and without the position effect; two seeds each. Designs
whose comparisons do not link all essays are skipped (Firth's estimate does not exist).

    python benchmarks/firth_convergence.py                  # 1,000 and 6,000 essays
    python benchmarks/firth_convergence.py --sizes 1000 --exact
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import time

import numpy as np
import pandas as pd
from scipy.special import expit

import cjlib.scoring as scoring
from cjlib.errors import DisconnectedComparisonsError

PER_ESSAY = (5, 6, 10, 20)
SPREADS = (1.0, 1.5, 2.5)
SEEDS = (11, 12)
DELTA = 0.3


def simulate(n: int, per_essay: int, seed: int, spread: float) -> pd.DataFrame:
    """Position-form decisions: n · per_essay / 2 random pairs, the first shown as A."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread, n)
    m = n * per_essay // 2
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n
    a_wins = rng.random(m) < expit(theta[first] - theta[second] + DELTA)
    return pd.DataFrame(
        {
            "essay_a_id": first,
            "essay_b_id": second,
            "winner": np.where(a_wins, "essay_a", "essay_b"),
        }
    )


def _exact_distance(
    frame: pd.DataFrame, sparse: scoring.BTResult, position: bool
) -> tuple[pd.Series, pd.Series]:
    """|θ_sparse − θ_exact| / SE_exact per essay (dense leverages) and each essay's count."""
    limit = scoring.FIRTH_EXACT_MAX_ESSAYS
    scoring.FIRTH_EXACT_MAX_ESSAYS = 10**9
    try:
        exact = scoring.fit_bradley_terry(frame, position_effect=position)
    finally:
        scoring.FIRTH_EXACT_MAX_ESSAYS = limit
    theta = sparse.scores["theta"].reindex(exact.scores.index)
    distance = (theta - exact.scores["theta"]).abs() / exact.scores["se"]
    return distance, exact.scores["n_comparisons"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 6000])
    parser.add_argument(
        "--exact", action="store_true", help="compare with exact leverages (≤ 2,000 essays)"
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(f"load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"{'essays':>7} {'per essay':>9} {'converged':>10} {'Newton steps':>13} "
        f"{'CPU s / fit':>12}  |Δθ|/SE vs exact: max (that essay's comparisons), 99th pct"
    )
    for n in args.sizes:
        for per in PER_ESSAY:
            fits = converged = steps = 0
            cpu = 0.0
            distances, counts = [], []
            for spread, position, seed in itertools.product(SPREADS, (False, True), SEEDS):
                frame = simulate(n, per, seed, spread)
                start = time.process_time()
                try:
                    result = scoring.fit_bradley_terry(
                        frame, position_effect=position, se_method="cavity_approx"
                    )
                except DisconnectedComparisonsError:
                    continue
                cpu += time.process_time() - start
                fits += 1
                converged += result.converged
                steps += result.iterations
                if args.exact and n <= 2000:
                    distance, count = _exact_distance(frame, result, position)
                    distances.append(distance)
                    counts.append(count)
            distance = "—"
            if distances:
                every = pd.concat(distances, ignore_index=True)
                count = pd.concat(counts, ignore_index=True)
                worst = int(every.to_numpy().argmax())
                distance = (
                    f"{every.max():.3f} ({count.iloc[worst]:.0f}), {every.quantile(0.99):.3f}"
                )
            print(
                f"{n:>7,} {per:>9} {f'{converged}/{fits}':>10} {steps / max(fits, 1):>13.0f} "
                f"{cpu / max(fits, 1):>12.3f}  {distance}"
            )
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

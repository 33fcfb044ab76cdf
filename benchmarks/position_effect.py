"""Bias and coverage of ``order_agreement``'s position-effect estimate, by simulation.

Each replicate draws abilities from a truth generator, asks ``n_pairs`` random pairs in both
orders of a Bradley–Terry judge with position effect δ, P(A wins) = σ(θ_A − θ_B + δ), and
estimates δ with :func:`cjlib.llm.orders.order_agreement` (δ̂ = ½·log(n_AA / n_BB)). It prints,
per generator and δ, the mean estimate, its bias, the coverage of the nominal 95% interval and
the share of replicates with no estimate (n_AA or n_BB = 0), plus the mean forward/reverse
agreement and position-A win share.

    python benchmarks/position_effect.py                 # 400 replicates per cell
    python benchmarks/position_effect.py --replicates 100 --pairs 200
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from cjlib.llm.orders import order_agreement

GENERATORS = {
    "normal(0, 1)": lambda rng, n: rng.normal(0.0, 1.0, n),
    "uniform(-2, 2)": lambda rng, n: rng.uniform(-2.0, 2.0, n),
    "student-t(3)": lambda rng, n: rng.standard_t(3, n),
}


def _replicate(rng: np.random.Generator, generator, delta: float, n_essays: int, n_pairs: int):
    theta = generator(rng, n_essays)
    first = rng.integers(0, n_essays, n_pairs)
    second = (first + rng.integers(1, n_essays, n_pairs)) % n_essays
    a = np.concatenate([first, second])
    b = np.concatenate([second, first])
    p_a = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b] + delta)))
    winner = np.where(rng.random(a.size) < p_a, "essay_a", "essay_b")
    frame = pd.DataFrame(
        {"model": "m", "essay_a_id": a.astype(str), "essay_b_id": b.astype(str), "winner": winner}
    )
    return order_agreement(frame).iloc[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=400)
    parser.add_argument("--pairs", type=int, default=300, help="pairs asked in both orders")
    parser.add_argument("--essays", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, generator in GENERATORS.items():
        for delta in (0.0, 0.3, 0.8):
            reps = [
                _replicate(rng, generator, delta, args.essays, args.pairs)
                for _ in range(args.replicates)
            ]
            est = np.array([r.position_effect for r in reps])
            low = np.array([r.position_effect_low for r in reps])
            high = np.array([r.position_effect_high for r in reps])
            ok = ~np.isnan(est)
            rows.append(
                {
                    "generator": name,
                    "delta": delta,
                    "mean_estimate": est[ok].mean(),
                    "bias": est[ok].mean() - delta,
                    "coverage_95": ((low[ok] <= delta) & (delta <= high[ok])).mean(),
                    "no_estimate": 1 - ok.mean(),
                    "agreement": np.mean([r.agreement for r in reps]),
                    "a_win_share": np.mean([r.a_win_share for r in reps]),
                }
            )
    print(f"{args.replicates} replicates, {args.pairs} pairs × 2 orders, {args.essays} essays")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

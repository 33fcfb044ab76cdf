"""Simulation study behind the default Bradley–Terry estimator (issue 11).

For each truth generator, comparisons per essay (5, 10, 40) and estimator, simulate many CJ
sessions, fit them, and print bias and 95% interval coverage of θ and of the position
effect δ, plus the reported reliability against the true one. Results and the choice of
``cjlib.scoring.DEFAULT_METHOD`` are in ``docs/scoring.md``.

Generators:

- ``normal``: θ ~ N(0, 1.5²); balanced random pairs (every essay in k comparisons).
- ``real``: a real-shaped session: θ bimodal and skewed (70% N(−0.5, 0.8²), 30%
  N(1.8, 0.6²)) plus 5% of essays at ±4.5 that win or lose (almost) everything; half of
  the pairs adaptive (an essay meets a neighbour in a noisy running order), half random;
  the number of comparisons per essay varies (each essay gets k ± 40%).

Both put the essay in position A at random and use δ = 0.3 (A favoured).

Metrics, over replications and essays (θ centred to sum zero, as the estimates are):

- ``slope``: least-squares slope of θ̂ on θ (1 = no stretch or shrink); ``rmse``.
- ``cover θ``: share of essays with |θ̂ − θ| ≤ 1.96 SE.
- ``δ̂/δ``: mean δ̂ over δ; ``cover δ``.
- ``rel``: mean reported reliability; ``true rel``: mean squared correlation of θ̂ with θ;
  ``mle_rel`` = (var θ̂ − mean SE²)/var θ̂ and ``eap_rel`` = var θ̂/(var θ̂ + mean SE²) from the
  same fit, to see which formula fits which estimator.
- ``fits``: share of sessions the method could score (the MLE does not exist when an essay
  wins or loses everything).

    python benchmarks/bt_study.py                 # 60 essays, 100 replications
    python benchmarks/bt_study.py --reps 20 --essays 40
"""

from __future__ import annotations

import argparse
import os

# Many small dense solves: BLAS threads only contend (10× slower on a loaded 2-core box).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy.special import expit

from cjlib.errors import DisconnectedComparisonsError
from cjlib.scoring import fit_bradley_terry

DELTA = 0.3
PER_ESSAY = (5, 10, 40)
METHODS = {
    "mle": {"method": "mle"},
    "firth": {"method": "firth"},
    "sirt": {"method": "sirt"},
    "ridge α=0.03": {"method": "ridge", "alpha": 0.03},
}


def _balanced_pairs(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    rounds = rng.permuted(np.tile(np.arange(n), (k, 1)), axis=1)
    half = n // 2
    pairs = np.column_stack([rounds[:, :half].ravel(), rounds[:, half : 2 * half].ravel()])
    return pairs[pairs[:, 0] != pairs[:, 1]]


def normal_truth(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(0.0, 1.5, n), _balanced_pairs(n, k, rng)


def real_truth(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    upper = rng.random(n) < 0.3
    theta = np.where(upper, rng.normal(1.8, 0.6, n), rng.normal(-0.5, 0.8, n))
    extreme = rng.choice(n, max(2, n // 20), replace=False)
    theta[extreme] = np.where(np.arange(len(extreme)) % 2 == 0, 4.5, -4.5)
    budget = np.maximum(1, np.rint(k * rng.uniform(0.6, 1.4, n))).astype(int)
    running = np.argsort(theta + rng.normal(0.0, 1.0, n))
    rank = np.empty(n, dtype=int)
    rank[running] = np.arange(n)
    pairs = []
    for essay in range(n):
        for _ in range((budget[essay] + 1) // 2):
            if rng.random() < 0.5:
                step = rng.integers(1, 4) * rng.choice([-1, 1])
                other = running[np.clip(rank[essay] + step, 0, n - 1)]
            else:
                other = rng.integers(0, n)
            if other != essay:
                pairs.append((essay, other))
    return theta, np.asarray(pairs)


GENERATORS = {"normal": normal_truth, "real": real_truth}


def session(generator, n: int, k: int, rng: np.random.Generator):
    theta, pairs = generator(n, k, rng)
    swap = rng.random(len(pairs)) < 0.5
    a = np.where(swap, pairs[:, 1], pairs[:, 0])
    b = np.where(swap, pairs[:, 0], pairs[:, 1])
    a_wins = rng.random(len(a)) < expit(theta[a] - theta[b] + DELTA)
    frame = pd.DataFrame(
        {"essay_a_id": a, "essay_b_id": b, "winner": np.where(a_wins, "essay_a", "essay_b")}
    )
    return theta, frame


def _formula(scores: pd.DataFrame, kind: str) -> float:
    informative = scores[scores["n_comparisons"] > 0]
    variance = informative["theta"].var(ddof=1)
    mse = (informative["se"] ** 2).mean()
    return (variance - mse) / variance if kind == "mle" else variance / (variance + mse)


def evaluate(theta: np.ndarray, result) -> dict:
    scores = result.scores
    truth = pd.Series(theta, index=range(len(theta))).reindex(scores.index).to_numpy()
    truth = truth - truth.mean()
    estimate = scores["theta"].to_numpy()
    row = {
        "errors": estimate - truth,
        "truth": truth,
        "estimate": estimate,
        "covered": np.abs(estimate - truth) <= 1.96 * scores["se"].to_numpy(),
        "delta": result.position_effect["estimate"],
        "delta_covered": abs(result.position_effect["estimate"] - DELTA)
        <= 1.96 * result.position_effect["se"],
        "reliability": result.reliability,
        "mle_rel": _formula(scores, "mle"),
        "eap_rel": _formula(scores, "eap"),
        "true_reliability": float(np.corrcoef(estimate, truth)[0, 1] ** 2),
    }
    if "se_sirt" in scores:
        row["covered_sirt_se"] = np.abs(estimate - truth) <= 1.96 * scores["se_sirt"].to_numpy()
    return row


def summarise(rows: list[dict], attempts: int) -> dict:
    if not rows:
        return {"fits": 0.0}
    truth = np.concatenate([r["truth"] for r in rows])
    estimate = np.concatenate([r["estimate"] for r in rows])
    errors = np.concatenate([r["errors"] for r in rows])
    summary = {
        "fits": len(rows) / attempts,
        "slope": float(truth @ estimate / (truth @ truth)),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "cover θ": float(np.mean(np.concatenate([r["covered"] for r in rows]))),
        "δ̂/δ": float(np.mean([r["delta"] for r in rows]) / DELTA),
        "cover δ": float(np.mean([r["delta_covered"] for r in rows])),
        "rel": float(np.mean([r["reliability"] for r in rows])),
        "mle_rel": float(np.mean([r["mle_rel"] for r in rows])),
        "eap_rel": float(np.mean([r["eap_rel"] for r in rows])),
        "true rel": float(np.mean([r["true_reliability"] for r in rows])),
    }
    if "covered_sirt_se" in rows[0]:
        summary["cover θ (sirt SE)"] = float(
            np.mean(np.concatenate([r["covered_sirt_se"] for r in rows]))
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--essays", type=int, default=60)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--per-essay", type=int, nargs="+", default=list(PER_ESSAY))
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    print(f"{args.essays} essays, {args.reps} replications per cell, δ = {DELTA}")
    header = (
        "| truth | k | method | fits | slope | rmse | cover θ | δ̂/δ | cover δ | rel | true rel "
        "| mle_rel | eap_rel |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.generators:
        generator = GENERATORS[name]
        for k in args.per_essay:
            rng = np.random.default_rng([args.seed, k, len(name)])
            sessions = [session(generator, args.essays, k, rng) for _ in range(args.reps)]
            for label, kwargs in METHODS.items():
                rows = []
                for theta, frame in sessions:
                    try:
                        result = fit_bradley_terry(frame, position_effect=True, **kwargs)
                    except (DisconnectedComparisonsError, ValueError):
                        continue
                    rows.append(evaluate(theta, result))
                s = summarise(rows, len(sessions))
                if s["fits"] == 0:
                    print(f"| {name} | {k} | {label} | 0.00 |" + " — |" * 9)
                    continue
                extra = ""
                if "cover θ (sirt SE)" in s:
                    extra = f" (sirt's se.theta: {s['cover θ (sirt SE)']:.3f})"
                print(
                    f"| {name} | {k} | {label} | {s['fits']:.2f} | {s['slope']:.3f} | "
                    f"{s['rmse']:.3f} | {s['cover θ']:.3f}{extra} | {s['δ̂/δ']:.2f} | "
                    f"{s['cover δ']:.3f} | {s['rel']:.3f} | {s['true rel']:.3f} | "
                    f"{s['mle_rel']:.3f} | {s['eap_rel']:.3f} |",
                    flush=True,
                )
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

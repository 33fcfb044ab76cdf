"""The runner's θ-only stability fit agrees with the fit of record."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cjlib.linalg import conjugate_gradient
from cjlib.scoring import fit_bradley_terry
from cjlib.workflow.runner import STABILITY_ALPHA, _StabilityFit


def _decisions(seed: int, n: int = 200, m: int = 4000):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    a_wins = rng.random(m) < 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
    return a, b, a_wins


def test_warm_started_theta_matches_a_cold_fit_and_fit_bradley_terry():
    ids = [f"e{i:03d}" for i in range(200)]
    a, b, a_wins = _decisions(3)
    winners, losers = np.where(a_wins, a, b), np.where(a_wins, b, a)
    fit = _StabilityFit(ids, STABILITY_ALPHA)
    for stop in (1000, 2500, 4000):  # warm start from the previous θ each time
        fit._winners, fit._losers = list(winners[:stop]), list(losers[:stop])
        theta = fit.fit()
        cold = _StabilityFit(ids, STABILITY_ALPHA)
        cold._winners, cold._losers = fit._winners, fit._losers
        assert np.max(np.abs(theta - cold.fit())) < 1e-6
    frame = pd.DataFrame(
        {
            "essay_a_id": [ids[i] for i in a],
            "essay_b_id": [ids[i] for i in b],
            "winner": np.where(a_wins, "essay_a", "essay_b"),
        }
    )
    scores = fit_bradley_terry(frame, alpha=STABILITY_ALPHA).scores
    expected = scores["theta"].reindex(ids).to_numpy()
    assert np.max(np.abs((theta - theta.mean()) - (expected - expected.mean()))) < 1e-6
    assert (fit.counts() == scores["n_comparisons"].reindex(ids).to_numpy()).all()


def test_conjugate_gradient_solves_a_laplacian_system_to_its_tolerance():
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(5)
    n = 300
    a = rng.integers(0, n, 3000)
    b = (a + rng.integers(1, n, 3000)) % n
    weight = rng.uniform(0.05, 0.25, 3000)
    diagonal = np.bincount(a, weight, n) + np.bincount(b, weight, n) + 0.06
    matrix = csr_matrix(
        (np.concatenate([-weight, -weight, diagonal]),
         (np.concatenate([a, b, np.arange(n)]), np.concatenate([b, a, np.arange(n)]))),
        shape=(n, n),
    )  # fmt: skip
    rhs = rng.normal(size=n)
    exact = np.linalg.solve(matrix.toarray(), rhs)
    for rtol in (1e-4, 1e-10):
        x = conjugate_gradient(lambda v: matrix @ v, rhs, diagonal, rtol=rtol, maxiter=1000)
        assert np.linalg.norm(matrix @ x - rhs) <= rtol * np.linalg.norm(rhs)
    assert np.max(np.abs(x - exact)) < 1e-8
    assert not conjugate_gradient(
        lambda v: matrix @ v, np.zeros(n), diagonal, rtol=1e-8, maxiter=10
    ).any()

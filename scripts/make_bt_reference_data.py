"""Write the small decision files that ``scripts/bt_reference.R`` fits with BradleyTerry2.

Deterministic (fixed seeds); the CSVs are committed under ``tests/fixtures/bt_reference`` so
the tests compare against R's numbers without R. Columns: ``essay_a_id``, ``essay_b_id``,
``winner`` (``essay_a`` / ``essay_b``), ``judge_id``.

    python scripts/make_bt_reference_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bt_reference"


def _decisions(theta: np.ndarray, pairs: np.ndarray, delta: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = pairs[:, 0], pairs[:, 1]
    a_wins = rng.random(len(a)) < expit(theta[a] - theta[b] + delta)
    return pd.DataFrame(
        {
            "essay_a_id": [f"e{i:02d}" for i in a],
            "essay_b_id": [f"e{i:02d}" for i in b],
            "winner": np.where(a_wins, "essay_a", "essay_b"),
            "judge_id": [f"j{k}" for k in rng.integers(0, 4, len(a))],
        }
    )


def _random_pairs(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n
    return np.column_stack([first, second])


def connected() -> pd.DataFrame:
    """10 essays, 150 random decisions plus a ring of wins: the MLE exists."""
    rng = np.random.default_rng(11)
    n = 10
    theta = rng.normal(0.0, 1.0, n)
    frame = _decisions(theta, _random_pairs(n, 150, rng), 0.4, 12)
    ring = np.arange(n)
    ring_rows = pd.DataFrame(
        {
            "essay_a_id": [f"e{i:02d}" for i in ring],
            "essay_b_id": [f"e{(i + 1) % n:02d}" for i in ring],
            "winner": ["essay_a"] * n,
            "judge_id": ["j0"] * n,
        }
    )
    ring_back = ring_rows.rename(columns={"essay_a_id": "essay_b_id", "essay_b_id": "essay_a_id"})
    ring_back["winner"] = "essay_b"
    return pd.concat([frame, ring_rows, ring_back[ring_rows.columns]], ignore_index=True)


def separated() -> pd.DataFrame:
    """12 essays, about 5 decisions each; the strongest essay wins every comparison."""
    rng = np.random.default_rng(21)
    n = 12
    theta = np.sort(rng.normal(0.0, 1.2, n))[::-1].copy()
    theta[0] += 3.0
    frame = _decisions(theta, _random_pairs(n, 30, rng), 0.3, 22)
    top = frame["essay_a_id"].eq("e00") | frame["essay_b_id"].eq("e00")
    frame.loc[top, "winner"] = np.where(frame.loc[top, "essay_a_id"] == "e00", "essay_a", "essay_b")
    return frame


def sparse() -> pd.DataFrame:
    """20 essays in a ring plus 20 random pairs: 3 comparisons per essay on average."""
    rng = np.random.default_rng(31)
    n = 20
    theta = rng.normal(0.0, 1.0, n)
    ring = np.column_stack([np.arange(n), (np.arange(n) + 1) % n])
    pairs = np.vstack([ring, _random_pairs(n, 20, rng)])
    return _decisions(theta, pairs, 0.5, 32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in (("connected", connected), ("separated", separated), ("sparse", sparse)):
        build().to_csv(OUT / f"{name}.csv", index=False)


if __name__ == "__main__":
    main()

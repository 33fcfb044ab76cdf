"""Bulk simulated judgements draw exactly what one generator per judgement draws."""

from __future__ import annotations

import numpy as np

from cjlib.simulation import (
    _pcg64_uniforms,
    _seed_sequence_words,
    rng_for,
    simulate_judgement,
    simulate_judgements,
    stable_seed,
)

# 0, one entropy word, the edges of two words, and ordinary SHA-256 seeds.
SEEDS = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1] + [stable_seed("t", i) for i in range(500)]


def test_seed_words_and_uniforms_equal_numpys_generators():
    seeds = np.array(SEEDS, dtype=np.uint64)
    words = np.array([np.random.SeedSequence(s).generate_state(4, np.uint64) for s in SEEDS])
    assert np.array_equal(_seed_sequence_words(seeds), words)
    uniforms = np.array([np.random.default_rng(s).random(4) for s in SEEDS])
    assert np.array_equal(_pcg64_uniforms(seeds, 4), uniforms)


def test_simulate_judgements_equals_simulate_judgement_one_by_one():
    rng = rng_for("test", 1)
    a, b = rng.normal(size=600), rng.normal(size=600)
    keys = [f"pair{i}" for i in range(600)]
    params = {"discrimination": 1.2, "position_bias": -0.2, "error_rate": 0.15,
              "lost_rate": 0.1}  # fmt: skip
    bulk = simulate_judgements(a, b, seed=9, keys=keys, **params)
    one = [
        simulate_judgement(x, y, seed=9, key=k, **params)
        for x, y, k in zip(a.tolist(), b.tolist(), keys, strict=True)
    ]
    assert bulk.outcome.tolist() == [j.outcome for j in one]
    assert bulk.p_a.tolist() == [j.p_a for j in one]
    assert bulk.confidence.tolist() == [j.confidence for j in one]
    assert set(bulk.outcome) == {"essay_a", "essay_b", "error", "lost"}

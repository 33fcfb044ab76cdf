"""Simulated CJ populations and judgements with known truth, reproducible across processes.

Randomness is derived from SHA-256 of explicit keys (never Python's salted ``hash()``), so the
same seed and key give the same judgement in any process, in any order of calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cjlib.grades import GradeScale, get_grade_scale

#: Distance between neighbouring true grade centres on the latent (logit) ability scale.
GRADE_STEP = 0.9


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` via SHA-256 (identical in every process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def rng_for(*parts: object) -> np.random.Generator:
    """A NumPy generator seeded by :func:`stable_seed` of ``parts``."""
    return np.random.default_rng(stable_seed(*parts))


def true_grade_centres(scale: str | GradeScale, step: float = GRADE_STEP) -> pd.Series:
    """Centres of each label of ``scale`` on the latent ability scale, symmetric about 0.

    Returns a Series indexed by ``scale.all_labels`` (lowest first).
    """
    labels = get_grade_scale(scale).all_labels
    k = len(labels)
    return pd.Series(step * (np.arange(k) - (k - 1) / 2), index=list(labels), name="centre")


def _default_weights(labels: Sequence[str]) -> np.ndarray:
    # A bell over the scale, lighter in the tails, like a national cohort.
    x = np.linspace(-1.5, 1.5, len(labels))
    w = np.exp(-0.5 * x**2)
    return w / w.sum()


@dataclass(frozen=True)
class Population:
    """Essays with known latent ability and true grade.

    ``essays`` columns: ``essay_id``, ``is_anchor``, ``ability``, ``true_grade``,
    ``grade_index`` (position in ``scale.all_labels``).
    """

    scale: GradeScale
    essays: pd.DataFrame
    seed: int
    #: The true grade boundaries on the ability scale (``len(scale.all_labels) − 1`` values,
    #: increasing); ``None`` when the population was built without them.
    boundaries: tuple[float, ...] | None = None

    @property
    def anchor_grades(self) -> pd.Series:
        """Anchor essay id → grade."""
        a = self.essays[self.essays["is_anchor"]]
        return pd.Series(a["true_grade"].to_numpy(), index=a["essay_id"].to_numpy(), name="grade")

    @property
    def students(self) -> pd.DataFrame:
        """The non-anchor essays."""
        return self.essays[~self.essays["is_anchor"]].reset_index(drop=True)


def simulate_population(
    scale: str | GradeScale,
    anchor_grades: Sequence[str],
    n_students: int,
    *,
    seed: int,
    grade_weights: Sequence[float] | None = None,
    anchor_jitter: float = 0.15,
    student_prefix: str = "S",
    anchor_prefix: str = "ANCHOR_",
) -> Population:
    """Draw a population: anchors near their grade centres, students across the scale.

    Students' true grades are drawn from ``grade_weights`` (over ``scale.all_labels``; default a
    bell shape), and their abilities uniformly inside that grade's interval, so the true grade
    is exactly the interval the ability falls in. Anchors sit at their grade's centre plus
    N(0, ``anchor_jitter``·step) noise, i.e. typical examples of their grade.
    """
    sc = get_grade_scale(scale)
    centres = true_grade_centres(sc)
    labels = list(centres.index)
    rng = rng_for("population", seed)
    weights = np.asarray(grade_weights if grade_weights is not None else _default_weights(labels))
    if len(weights) != len(labels):
        raise ValueError(f"grade_weights needs {len(labels)} values, one per {labels}")
    weights = weights / weights.sum()
    for g in anchor_grades:
        sc.index(g)
    a_idx = np.array([labels.index(g) for g in anchor_grades], dtype=int)
    a_ability = centres.to_numpy()[a_idx] + rng.normal(0, anchor_jitter * GRADE_STEP, len(a_idx))
    s_idx = rng.choice(len(labels), size=n_students, p=weights)
    s_ability = centres.to_numpy()[s_idx] + rng.uniform(-0.5, 0.5, n_students) * GRADE_STEP
    ability = np.concatenate([a_ability, s_ability])
    ids = [f"{anchor_prefix}{i + 1:02d}" for i in range(len(a_idx))] + [
        f"{student_prefix}{i + 1:04d}" for i in range(n_students)
    ]
    grade_idx = np.concatenate([a_idx, s_idx])
    essays = _essay_table(ids, len(a_idx), ability, labels, grade_idx)
    bounds = tuple(float(b) for b in (centres.to_numpy()[:-1] + centres.to_numpy()[1:]) / 2)
    return Population(scale=sc, essays=essays, seed=seed, boundaries=bounds)


def _essay_table(
    ids: list[str], n_anchors: int, ability: np.ndarray, labels: list[str], grade_idx: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "essay_id": ids,
            "is_anchor": np.r_[np.ones(n_anchors, bool), np.zeros(len(ids) - n_anchors, bool)],
            "ability": ability,
            "true_grade": np.asarray(labels)[grade_idx],
            "grade_index": grade_idx,
        }
    )


def _uneven_boundaries(k: int, rng: np.random.Generator, width_sd: float) -> np.ndarray:
    """``k − 1`` increasing boundaries: inner grade widths ``GRADE_STEP·exp(N(0, width_sd²))``."""
    widths = GRADE_STEP * np.clip(np.exp(rng.normal(0.0, width_sd, k - 2)), 0.4, 2.2)
    bounds = np.r_[0.0, np.cumsum(widths)]
    return bounds - bounds.mean()


def _skewed_abilities(bounds: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A two-component normal mixture over the scale: a broad bulk and a narrow upper mode.

    Skewness is positive (a long upper tail) or, with probability ½ per population, negative.
    """
    span = bounds[-1] - bounds[0]
    upper = rng.random(size) < 0.3
    x = np.where(
        upper,
        rng.normal(0.30 * span, 0.10 * span, size),
        rng.normal(-0.12 * span, 0.20 * span, size),
    )
    return x if rng.random() < 0.5 else -x


def _grade_of(ability: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.searchsorted(bounds, ability, side="right")


def simulate_uneven_population(
    scale: str | GradeScale,
    anchor_grades: Sequence[str],
    n_students: int,
    *,
    seed: int,
    width_sd: float = 0.4,
    student_prefix: str = "S",
    anchor_prefix: str = "ANCHOR_",
) -> Population:
    """Draw a population unlike :func:`simulate_population`'s: the second truth generator.

    It breaks each convenience of the first generator, so a projection checked on both is not
    checked only against its own assumptions:

    - **Unequal grade widths.** Inner grades are ``GRADE_STEP·exp(N(0, width_sd²))`` wide
      (clipped to 0.4–2.2 steps), drawn per population; the lowest and highest labels are
      open-ended.
    - **Abilities not normal.** Students' abilities come from a skewed two-component normal
      mixture (70% a broad bulk, 30% a narrow mode towards one end of the scale, the end
      drawn per population), and the true grade is the interval the ability falls in, so
      grade shares follow the mixture, not a bell.
    - **Anchors spread within their grade.** Each anchor is a random essay of its grade from
      the same population (drawn from a large pool conditioned on the grade), not a typical
      essay at the grade's centre; a grade no pool essay reaches gets uniform draws inside it.

    Parameters
    ----------
    scale : str or GradeScale
        Grade scale whose ``all_labels`` are the true grades.
    anchor_grades : sequence of str
        One label per anchor essay.
    n_students : int
        Number of student essays.
    seed : int
        Seed; the same seed gives the same population in every process.
    width_sd : float, default 0.4
        SD of the log width of inner grades (0 gives equal widths).

    Returns
    -------
    Population
        With ``boundaries`` set to the true grade boundaries.
    """
    sc = get_grade_scale(scale)
    labels = list(sc.all_labels)
    for g in anchor_grades:
        sc.index(g)
    rng = rng_for("uneven-population", seed)
    bounds = _uneven_boundaries(len(labels), rng, width_sd)
    s_ability = _skewed_abilities(bounds, n_students, rng)
    pool = _skewed_abilities(bounds, 20_000, rng)
    pool_idx = _grade_of(pool, bounds)
    edges = np.r_[bounds[0] - GRADE_STEP, bounds, bounds[-1] + GRADE_STEP]
    a_idx = np.array([labels.index(g) for g in anchor_grades], dtype=int)
    a_ability = np.empty(len(a_idx))
    for i, g in enumerate(a_idx):
        members = pool[pool_idx == g]
        a_ability[i] = rng.choice(members) if len(members) else rng.uniform(edges[g], edges[g + 1])
    ability = np.concatenate([a_ability, s_ability])
    ids = [f"{anchor_prefix}{i + 1:02d}" for i in range(len(a_idx))] + [
        f"{student_prefix}{i + 1:04d}" for i in range(n_students)
    ]
    grade_idx = _grade_of(ability, bounds)
    essays = _essay_table(ids, len(a_idx), ability, labels, grade_idx)
    return Population(
        scale=sc, essays=essays, seed=seed, boundaries=tuple(float(b) for b in bounds)
    )


#: The truth generators projection calibration is checked on, by name.
TRUTH_GENERATORS = {"centred": simulate_population, "uneven": simulate_uneven_population}


@dataclass(frozen=True)
class SimulatedJudgement:
    """One simulated decision: ``outcome`` is ``essay_a``, ``essay_b``, ``error`` or ``lost``."""

    outcome: str
    p_a: float
    confidence: float


def simulate_judgement(
    ability_a: float,
    ability_b: float,
    *,
    seed: int,
    key: object,
    discrimination: float = 1.0,
    position_bias: float = 0.0,
    error_rate: float = 0.0,
    lost_rate: float = 0.0,
) -> SimulatedJudgement:
    """Decide one pair by the Bradley–Terry model with a position bias.

    P(A wins) = σ(discrimination·(θ_A − θ_B) + position_bias). With probability ``lost_rate``
    the callback never arrives (``lost``); otherwise with ``error_rate`` the judge errs
    (``error``). The draw depends only on ``(seed, key)``.
    """
    rng = rng_for("judgement", seed, key)
    u_lost, u_err, u_win = rng.random(3)
    p_a = float(1.0 / (1.0 + np.exp(-(discrimination * (ability_a - ability_b) + position_bias))))
    if u_lost < lost_rate:
        return SimulatedJudgement("lost", p_a, 0.0)
    if u_err < error_rate:
        return SimulatedJudgement("error", p_a, 0.0)
    outcome = "essay_a" if u_win < p_a else "essay_b"
    return SimulatedJudgement(outcome, p_a, float(max(p_a, 1.0 - p_a)))


@dataclass(frozen=True)
class SimulatedJudgements:
    """Many simulated decisions: element i is :func:`simulate_judgement` of pair i.

    ``outcome`` holds ``essay_a``, ``essay_b``, ``error`` or ``lost`` (object array).
    """

    outcome: np.ndarray
    p_a: np.ndarray
    confidence: np.ndarray


# NumPy's SeedSequence (O'Neill's seed_seq hash) and PCG64 (XSL-RR 128/64), as published in
# numpy/random/bit_generator.pyx and src/pcg64; NumPy keeps both streams stable across versions.
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_PCG_MULTIPLIER = (2549297995355413924 << 64) | 4865540595714422341
_MASK64 = (1 << 64) - 1
_MASK128 = (1 << 128) - 1


def _seed_sequence_words(seeds: np.ndarray) -> np.ndarray:
    """``SeedSequence(s).generate_state(4, np.uint64)`` for every 64-bit seed ``s``, vectorised.

    A seed below 2³² is one entropy word in NumPy and two here; the pool's missing words are
    hashed as 0 either way, so the states agree. Returns an (n, 4) array of uint64.
    """
    seeds = np.asarray(seeds, dtype=np.uint64)
    entropy = [(seeds & np.uint64(0xFFFFFFFF)).astype(np.uint32),
               (seeds >> np.uint64(32)).astype(np.uint32)]  # fmt: skip
    const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal const
        value = value ^ np.uint32(const)
        const = (const * _MULT_A) & 0xFFFFFFFF
        value = value * np.uint32(const)
        return value ^ (value >> np.uint32(16))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
        return result ^ (result >> np.uint32(16))

    zero = np.zeros(len(seeds), dtype=np.uint32)
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    const = _INIT_B
    words = []
    for i in range(8):
        value = pool[i % 4] ^ np.uint32(const)
        const = (const * _MULT_B) & 0xFFFFFFFF
        value = value * np.uint32(const)
        words.append((value ^ (value >> np.uint32(16))).astype(np.uint64))
    return np.stack([words[2 * k] | (words[2 * k + 1] << np.uint64(32)) for k in range(4)], axis=1)


def _pcg64_uniforms(seeds: np.ndarray, count: int) -> np.ndarray:
    """``np.random.default_rng(s).random(count)`` for every 64-bit seed ``s``; (n, count).

    The 128-bit state is held as Python ints in object arrays (exact arithmetic, one C loop
    per operation).
    """
    words = _seed_sequence_words(seeds).astype(object)
    seed = (words[:, 0] << 64) | words[:, 1]
    inc = (((words[:, 2] << 64) | words[:, 3]) << 1 | 1) & _MASK128

    def step(state: np.ndarray) -> np.ndarray:
        return (state * _PCG_MULTIPLIER + inc) & _MASK128

    state = step((inc + seed) & _MASK128)  # seeding: step from 0 (= inc), add the seed, step
    out = np.empty((len(seeds), count))
    for k in range(count):
        state = step(state)
        rot = (state >> 122).astype(np.int64)
        word = ((state >> 64) ^ state) & _MASK64
        word = np.array(word.tolist(), dtype=np.uint64)
        rotated = (word >> rot.astype(np.uint64)) | (word << ((64 - rot) % 64).astype(np.uint64))
        out[:, k] = (rotated >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return out


def _judgement_uniforms(seed: int, keys: Sequence[object]) -> np.ndarray:
    """The three uniforms (lost, error, win) :func:`simulate_judgement` draws for each key.

    The same numbers as ``rng_for("judgement", seed, key).random(3)``, about four times
    faster: building a NumPy generator per key cost more than the rest of a judgement.
    """
    seeds = np.array([stable_seed("judgement", seed, key) for key in keys], dtype=np.uint64)
    return _pcg64_uniforms(seeds, 3)


def simulate_judgements(
    ability_a: Sequence[float] | np.ndarray,
    ability_b: Sequence[float] | np.ndarray,
    *,
    seed: int,
    keys: Sequence[object],
    discrimination: float = 1.0,
    position_bias: float = 0.0,
    error_rate: float = 0.0,
    lost_rate: float = 0.0,
) -> SimulatedJudgements:
    """Decide many pairs at once: the same decisions as :func:`simulate_judgement` one by one.

    Each pair's draws still come from its own generator seeded by ``(seed, key)`` (so a
    decision does not depend on which other pairs are decided with it); the model is
    evaluated on arrays.
    """
    ability_a = np.asarray(ability_a, dtype=float)
    ability_b = np.asarray(ability_b, dtype=float)
    if not ability_a.shape == ability_b.shape == (len(keys),):
        raise ValueError("ability_a, ability_b and keys must have one entry per pair")
    u = _judgement_uniforms(seed, keys)
    p_a = 1.0 / (1.0 + np.exp(-(discrimination * (ability_a - ability_b) + position_bias)))
    lost = u[:, 0] < lost_rate
    error = ~lost & (u[:, 1] < error_rate)
    decided = ~lost & ~error
    outcome = np.where(u[:, 2] < p_a, "essay_a", "essay_b").astype(object)
    outcome[error] = "error"
    outcome[lost] = "lost"
    confidence = np.where(decided, np.maximum(p_a, 1.0 - p_a), 0.0)
    return SimulatedJudgements(outcome, p_a, confidence)


def random_pairs(
    essay_ids: Sequence[object], comparisons_per_essay: int, *, seed: int
) -> pd.DataFrame:
    """Random pairs where every essay appears about ``comparisons_per_essay`` times.

    Built from rounds of random perfect matchings (an odd essay out joins a random pair), with
    positions A/B assigned at random. Returns ``essay_a_id``, ``essay_b_id``.
    """
    ids = np.asarray(essay_ids, dtype=object)
    rng = rng_for("pairs", seed)
    a_list, b_list = [], []
    for _ in range(max(1, int(np.ceil(comparisons_per_essay)))):
        perm = rng.permutation(len(ids))
        if len(perm) % 2:
            perm = np.r_[perm, rng.choice(perm[:-1])]
        a, b = perm[0::2], perm[1::2]
        swap = rng.random(len(a)) < 0.5
        a_list.append(np.where(swap, b, a))
        b_list.append(np.where(swap, a, b))
    a_idx, b_idx = np.concatenate(a_list), np.concatenate(b_list)
    return pd.DataFrame({"essay_a_id": ids[a_idx], "essay_b_id": ids[b_idx]})


def simulate_comparisons(
    essays: pd.DataFrame,
    *,
    comparisons_per_essay: int = 10,
    seed: int,
    discrimination: float = 1.0,
    position_bias: float = 0.0,
    judge_id: str = "simulated",
) -> pd.DataFrame:
    """Simulate judgements for random pairs of ``essays`` (columns ``essay_id``, ``ability``).

    Returns a DataFrame in the ``essay_a_id``/``essay_b_id``/``winner`` form that
    :func:`cjlib.scoring.fit_bradley_terry` takes, plus ``judge_id`` and ``p_a``. Vectorised:
    one uniform draw per pair from a generator seeded by ``seed``.
    """
    ability = pd.Series(essays["ability"].to_numpy(), index=essays["essay_id"].to_numpy())
    pairs = random_pairs(ability.index, comparisons_per_essay, seed=seed)
    diff = ability.loc[pairs["essay_a_id"]].to_numpy() - ability.loc[pairs["essay_b_id"]].to_numpy()
    p_a = 1.0 / (1.0 + np.exp(-(discrimination * diff + position_bias)))
    u = rng_for("comparisons", seed).random(len(pairs))
    pairs["winner"] = np.where(u < p_a, "essay_a", "essay_b")
    pairs["judge_id"] = judge_id
    pairs["p_a"] = p_a
    return pairs

"""Pair generation in waves: which essays meet, in which position, under a named strategy.

Pure: ids, counts and (for the adaptive strategies) current estimates in, a list of ordered
pairs (position A, position B) out. Three strategies share one wave builder:

``balanced``
    Coverage first: essays with the fewest comparisons are matched first, no pair repeats
    until every pair has been seen as often, anchors and students mixed. Ignores the
    estimates, so its reliability statistics are not inflated by the design.
``adaptive``
    Every essay still takes part once per round (so exposure stays even), but its partner is
    the one whose comparison is most informative given the current estimates: the largest
    expected Fisher information p(1 − p) (Pollitt's adaptive comparative judgement).
``boundary``
    For grading: essays whose grade is uncertain (a grade boundary within their error) are
    served first and compared with anchors and students lying near that boundary; essays
    whose grade is already certain only keep an exposure floor.

Every wave of every strategy keeps these invariants: no self-pairs; each essay at most once
per round (a round is a matching over the essays; a wave larger than n/2 pairs spans rounds);
no unordered pair repeats while the round can still give the essay a partner it has met less
often (splitting a pair already chosen in the round if needed; close to a full round robin
the greedy rounds may still repeat a few pairs early); positions
A/B balanced per essay (the essay that has sat in A more often goes to B).

References
----------
Pollitt, A. (2012). The method of adaptive comparative judgement. *Assessment in Education*,
19(3), 281–300.
Bramley, T. (2015). *Investigating the reliability of adaptive comparative judgment*.
Cambridge Assessment Research Report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from cjlib.errors import UsageError
from cjlib.simulation import rng_for

__all__ = [
    "PAIRING_STRATEGIES",
    "AdaptivePairing",
    "BalancedPairing",
    "BoundaryPairing",
    "Estimates",
    "PairingState",
    "PairingStrategy",
    "all_pairs_seen",
    "grade_uncertainty",
    "make_strategy",
    "next_wave",
    "position_balance",
]


def _pair_key(a: Hashable, b: Hashable) -> tuple:
    return (a, b) if str(a) <= str(b) else (b, a)


@dataclass
class PairingState:
    """What has been paired so far: unordered pair counts and A/B position counts per essay."""

    pair_counts: Counter = field(default_factory=Counter)
    position_a: Counter = field(default_factory=Counter)
    position_b: Counter = field(default_factory=Counter)
    #: Meeting counts by essay index for the ids of the last wave, kept in step by
    #: :meth:`add` / :meth:`remove` so a wave does not rebuild them from every pair so far.
    _meetings: _Meetings | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[Hashable, Hashable]]) -> PairingState:
        """Rebuild the state from pairs already submitted (A first)."""
        state = cls()
        for a, b in pairs:
            state.add(a, b)
        return state

    def add(self, a: Hashable, b: Hashable) -> None:
        """Record that ``a`` (position A) was paired with ``b`` (position B)."""
        self.pair_counts[_pair_key(a, b)] += 1
        self.position_a[a] += 1
        self.position_b[b] += 1
        if self._meetings is not None:
            self._meetings.add_ids(a, b, 1)

    def remove(self, a: Hashable, b: Hashable) -> None:
        """Forget one pairing of ``a`` (position A) with ``b`` (position B)."""
        key = _pair_key(a, b)
        self.pair_counts[key] -= 1
        if self.pair_counts[key] <= 0:
            del self.pair_counts[key]
        self.position_a[a] -= 1
        self.position_b[b] -= 1
        if self._meetings is not None:
            self._meetings.add_ids(a, b, -1)

    def comparisons(self, essay: Hashable) -> int:
        """How many pairs ``essay`` has been in."""
        return self.position_a[essay] + self.position_b[essay]

    def meetings(self, ids: Sequence[Hashable]) -> _Meetings:
        """How often each pair of ``ids`` has met, by index into ``ids`` (kept up to date)."""
        key = tuple(ids)
        if self._meetings is None or self._meetings.ids != key:
            self._meetings = _Meetings(key, self)
        return self._meetings


def _orient(a: Hashable, b: Hashable, state: PairingState, coin: float) -> tuple:
    # The essay that has been in position A more often (relative to B) goes to B.
    lean_a = state.position_a[a] - state.position_b[a]
    lean_b = state.position_a[b] - state.position_b[b]
    if lean_a < lean_b or (lean_a == lean_b and coin < 0.5):
        return (a, b)
    return (b, a)


@dataclass(frozen=True)
class Estimates:
    """Current estimates an adaptive strategy pairs on.

    Attributes
    ----------
    theta, se : pandas.Series
        Essay id → ability estimate and its standard error (``BTResult.scores``). Essays
        missing here are treated as θ = 0 with a large SE (nothing known yet).
    boundaries : numpy.ndarray
        Finite grade boundaries on the θ scale, ascending (``Projection.calibration["upper"]``
        without the last, infinite one). Needed by ``boundary`` only.
    boundary_se : numpy.ndarray
        Standard error of each boundary (same length; zeros when unknown).
    """

    theta: pd.Series
    se: pd.Series
    boundaries: np.ndarray = field(default_factory=lambda: np.empty(0))
    boundary_se: np.ndarray = field(default_factory=lambda: np.empty(0))

    @classmethod
    def from_scores(
        cls, scores: pd.DataFrame, calibration: pd.DataFrame | None = None
    ) -> Estimates:
        """From ``BTResult.scores`` and, optionally, ``Projection.calibration``."""
        theta = scores["theta"].astype(float)
        se = scores["se"].astype(float)
        if calibration is None:
            return cls(theta, se)
        upper = calibration["upper"].to_numpy(dtype=float)[:-1]
        upper_se = calibration["upper_se"].to_numpy(dtype=float)[:-1]
        return cls(theta, se, upper, np.nan_to_num(upper_se, nan=0.0))


#: SE given to an essay the estimates do not cover yet (nothing known about it).
_UNKNOWN_SE = 10.0


def _aligned(estimates: Estimates, ids: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    theta = estimates.theta.reindex(ids).to_numpy(dtype=float)
    se = estimates.se.reindex(ids).to_numpy(dtype=float)
    unknown = ~np.isfinite(theta) | ~np.isfinite(se)
    return np.where(unknown, 0.0, theta), np.where(unknown, _UNKNOWN_SE, se)


def grade_uncertainty(
    theta: np.ndarray, se: np.ndarray, boundaries: np.ndarray, boundary_se: np.ndarray
) -> np.ndarray:
    """1 − probability of the most probable grade cell, per essay.

    The cells are the intervals between ``boundaries``; essay i lies in cell
    ``(b_k, b_k+1]`` with probability Φ((b_k+1 − θᵢ)/s) − Φ((b_k − θᵢ)/s), s = √(seᵢ² + SE(b)²)
    (the projection's formula without its population prior). 0 means the grade is certain.
    """
    theta = np.asarray(theta, dtype=float)[:, None]
    se = np.asarray(se, dtype=float)[:, None]
    b = np.asarray(boundaries, dtype=float)[None, :]
    s = np.sqrt(se**2 + np.asarray(boundary_se, dtype=float)[None, :] ** 2)
    below = ndtr((b - theta) / s)  # P(θ below each boundary), ascending in k
    cdf = np.concatenate([np.zeros((len(theta), 1)), below, np.ones((len(theta), 1))], axis=1)
    cells = np.clip(np.diff(cdf, axis=1), 0.0, 1.0)
    return 1.0 - cells.max(axis=1)


def _expected_information(theta: np.ndarray, se: np.ndarray, i: int, cand: np.ndarray):
    # E[p(1 − p)] over the estimates' uncertainty, by the probit approximation of the
    # logistic-normal integral: σ(d / √(1 + π s²/8)).
    s2 = se[i] ** 2 + se[cand] ** 2
    p = expit((theta[i] - theta[cand]) / np.sqrt(1.0 + np.pi * s2 / 8.0))
    return p * (1.0 - p)


#: Wave-building callbacks: per-essay sort keys for the round order (primary first, given the
#: round's jitter), and per-partner keys for essay i over candidate indices (primary first,
#: given the candidates' tie-breaking noise). Smaller sorts first.
EssayKeys = Callable[[np.ndarray, np.ndarray], list[np.ndarray]]
PartnerKeys = Callable[[int, np.ndarray, np.ndarray, np.ndarray], list[np.ndarray]]


#: Partners considered per essay: the free essays first in the round's order. A wave of a large
#: batch would otherwise cost O(n²) time and an n × n matrix of meeting counts (1.6 GB at
#: 20,000 essays); below this many essays every free essay is considered, as before.
CANDIDATE_WINDOW = 256


class _Meetings:
    """How often each unordered pair has met: sparse, so memory grows with pairs, not n²."""

    def __init__(self, ids: tuple[Hashable, ...], state: PairingState):
        self.ids = ids
        self.index = {e: k for k, e in enumerate(ids)}
        self._met: dict[int, dict[int, int]] = {}
        # Dense scratch row for :meth:`row`: all zeros between calls.
        self._scratch = np.zeros(len(ids), dtype=np.int64)
        for (a, b), c in state.pair_counts.items():
            self.add_ids(a, b, c)

    def get(self, i: int, j: int) -> int:
        return self._met.get(i, {}).get(j, 0)

    def row(self, i: int, cand: np.ndarray) -> np.ndarray:
        met = self._met.get(i)
        if not met:
            return np.zeros(len(cand), dtype=np.int64)
        partners = np.fromiter(met.keys(), dtype=np.int64, count=len(met))
        self._scratch[partners] = np.fromiter(met.values(), dtype=np.int64, count=len(met))
        out = self._scratch[cand]
        self._scratch[partners] = 0
        return out

    def add_ids(self, a: Hashable, b: Hashable, delta: int) -> None:
        """Count ``delta`` more meetings of a and b (untracked if either is not in ``ids``)."""
        i, j = self.index.get(a), self.index.get(b)
        if i is not None and j is not None:
            self._met.setdefault(i, {})[j] = self.get(i, j) + delta
            self._met.setdefault(j, {})[i] = self.get(j, i) + delta


def _free_candidates(order: np.ndarray, free: np.ndarray, front: int, i: int) -> np.ndarray:
    """The first :data:`CANDIDATE_WINDOW` free essays of the round's order, other than ``i``."""
    span = order[front : front + 4 * CANDIDATE_WINDOW]
    cand = span[free[span] & (span != i)]
    if len(cand) < CANDIDATE_WINDOW and front + len(span) < len(order):
        rest = order[front:]
        cand = rest[free[rest] & (rest != i)]
    return cand[:CANDIDATE_WINDOW]


def _build_wave(
    ids: Sequence[Hashable],
    n_pairs: int,
    state: PairingState,
    rng: np.random.Generator,
    essay_keys: EssayKeys,
    partner_keys: PartnerKeys,
) -> list[tuple[Hashable, Hashable]]:
    """Greedy rounds of matchings; each essay at most once per round; updates ``state``."""
    n = len(ids)
    counts = np.array([state.comparisons(e) for e in ids], dtype=np.int64)
    met = state.meetings(ids)
    chosen: list[tuple[Hashable, Hashable]] = []
    while len(chosen) < n_pairs:
        jitter = rng.random(n)
        order = np.lexsort([*essay_keys(counts, jitter), jitter][::-1])
        free = np.ones(n, dtype=bool)
        round_pairs: list[tuple[int, int]] = []
        front = 0  # every essay before this position of the round's order is used
        for i in order:
            if len(chosen) >= n_pairs:
                break
            if not free[i]:
                continue
            while front < n and not free[order[front]]:
                front += 1
            # Candidates in round order, so the tie-breaking noise matches today's waves.
            cand = _free_candidates(order, free, front, i)
            if len(cand) == 0:
                break
            noise = rng.random(len(cand))
            keys = [met.row(i, cand), *partner_keys(i, cand, counts, noise), noise]
            j = cand[np.lexsort(keys[::-1])[0]]
            swap = _repair(i, j, met, round_pairs) if met.get(i, j) > 0 else None
            if swap is None:
                new = [(i, j)]
            else:
                # Undo (k, m) of this round and pair (i, k), (j, m): both meet less often.
                slot, k, m = swap
                state.remove(*chosen[slot])  # also takes (k, m) off ``met``
                chosen.pop(slot)
                round_pairs.pop(slot)
                new = [(i, k), (j, m)]
            for x, y in new:
                a, b = _orient(ids[x], ids[y], state, rng.random())
                state.add(a, b)  # also counts (x, y) in ``met``
                chosen.append((a, b))
                round_pairs.append((x, y))
            free[i] = free[j] = False
            counts[i] += 1
            counts[j] += 1
    return chosen


def _repair(
    i: int, j: int, met: _Meetings, round_pairs: list[tuple[int, int]]
) -> tuple[int, int, int] | None:
    """A pair (k, m) of this round to split so that i and j both get a partner met less often.

    Greedy rounds can leave essay i with only partners it has met; if some pair (k, m) of the
    round has met(i, k) and met(j, m) (or met(i, m) and met(j, k)) below met(i, j), splitting
    it avoids the repeat. Returns (position in the wave from its end, k, m) or None.
    """
    level = met.get(i, j)
    for back, (k, m) in enumerate(reversed(round_pairs)):
        for x, y in ((k, m), (m, k)):
            if met.get(i, x) < level and met.get(j, y) < level:
                return -1 - back, x, y
    return None


def _check_ids(essay_ids: Sequence[Hashable]) -> list:
    ids = list(essay_ids)
    if len(ids) < 2:
        raise ValueError("pairing needs at least 2 essays")
    if len(set(ids)) != len(ids):
        raise ValueError("pairing got repeated essay ids; pass each essay once")
    return ids


def _balanced_partner_keys(anchor_mask: np.ndarray) -> PartnerKeys:
    def keys(i: int, cand: np.ndarray, counts: np.ndarray, noise: np.ndarray) -> list:
        # Fewest comparisons, then an essay of the other kind (anchor vs student).
        return [counts[cand], anchor_mask[cand] == anchor_mask[i]]

    return keys


def _warmed_up(
    ids: Sequence[Hashable], state: PairingState, estimates: Estimates | None, floor: int
) -> bool:
    """Estimates are given and every essay had ``floor`` comparisons before this wave."""
    return estimates is not None and min(state.comparisons(e) for e in ids) >= floor


def _count_order(counts: np.ndarray, jitter: np.ndarray) -> list[np.ndarray]:
    return [counts]


def _anchor_mask(ids: Sequence[Hashable], anchors: Collection[Hashable]) -> np.ndarray:
    """Which of ``ids`` are anchors (the balanced keys prefer pairs of the other kind)."""
    anchor_set = set(anchors)
    return np.array([e in anchor_set for e in ids])


def next_wave(
    essay_ids: Sequence[Hashable],
    n_pairs: int,
    state: PairingState,
    *,
    seed: int,
    wave: int,
    anchors: Collection[Hashable] = (),
) -> list[tuple[Hashable, Hashable]]:
    """Choose the next ``n_pairs`` ordered pairs by the ``balanced`` rules; update ``state``.

    Rules, in priority order:

    1. no pair is repeated until every pair has been seen as often (pairs with the lowest count
       are always preferred; when the greedy round leaves an essay only partners it has met,
       a pair of the round is split so both get a new partner, if one exists);
    2. essays with the fewest comparisons are matched first, each essay at most once per round
       (a round is a matching over all essays; a wave larger than n/2 pairs spans rounds);
    3. among equally good partners, an essay of the other kind (anchor vs student) is preferred,
       so even a tiny budget links students to anchors;
    4. positions A/B are balanced per essay (the essay with more A appearances goes to B).

    Anchors and students are drawn from the same pool, so waves mix them. Ties are broken by a
    generator seeded from ``(seed, wave)`` only, so the same inputs give the same wave.

    Parameters
    ----------
    essay_ids : sequence
        Every essay in the batch (anchors included).
    n_pairs : int
        Pairs wanted in this wave.
    state : PairingState
        Pairs so far; updated in place.
    seed, wave : int
        Seed of the batch and number of the wave (together they fix the tie-breaking).
    anchors : collection, optional
        Ids of the anchor essays (only used to mix anchors with students).

    Returns
    -------
    list of (a, b)
        Ordered pairs, essay ``a`` shown in position A.
    """
    ids = _check_ids(essay_ids)
    anchor_mask = _anchor_mask(ids, anchors)
    return _build_wave(
        ids,
        n_pairs,
        state,
        rng_for("pairing", seed, wave),
        _count_order,
        _balanced_partner_keys(anchor_mask),
    )


@runtime_checkable
class PairingStrategy(Protocol):
    """A pairing strategy: a name and parameters recorded with the batch, and a wave builder.

    ``uses_estimates`` says whether :meth:`next_wave` needs current :class:`Estimates` (then the
    caller refits between waves); ``uses_boundaries`` whether they must carry grade
    boundaries.
    """

    name: ClassVar[str]
    uses_estimates: ClassVar[bool]
    uses_boundaries: ClassVar[bool]

    @property
    def params(self) -> dict[str, Any]: ...

    def wave_size(self, n_essays: int) -> int: ...

    def next_wave(
        self,
        essay_ids: Sequence[Hashable],
        n_pairs: int,
        state: PairingState,
        *,
        seed: int,
        wave: int,
        anchors: Collection[Hashable] = (),
        estimates: Estimates | None = None,
    ) -> list[tuple[Hashable, Hashable]]: ...


class _StrategyBase:
    """Shared parts: parameters as a dict, the record kept with a batch, wave size."""

    name: ClassVar[str]
    uses_estimates: ClassVar[bool] = False
    uses_boundaries: ClassVar[bool] = False
    #: Pairs per essay in a wave (0.5: n/2 pairs, every essay once).
    wave_share: ClassVar[float] = 0.5

    @property
    def params(self) -> dict[str, Any]:
        """The strategy's parameters (JSON-serialisable), recorded with the batch."""
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in fields(self)  # type: ignore[arg-type]
        }

    def record(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``: what a batch stores about its pairing."""
        return {"name": self.name, "params": self.params}

    def wave_size(self, n_essays: int) -> int:
        """Pairs per wave suggested for ``n_essays`` essays (at least 1)."""
        return max(1, int(n_essays * self.wave_share))


def _positive_int(name: str, value: Any, minimum: int = 0) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"pairing parameter {name} must be an integer >= {minimum}, got {value!r}")


def _fraction(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise UsageError(f"pairing parameter {name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class BalancedPairing(_StrategyBase):
    """``balanced``: today's waves (:func:`next_wave`); no parameters, no estimates."""

    name: ClassVar[str] = "balanced"

    def next_wave(
        self,
        essay_ids: Sequence[Hashable],
        n_pairs: int,
        state: PairingState,
        *,
        seed: int,
        wave: int,
        anchors: Collection[Hashable] = (),
        estimates: Estimates | None = None,
    ) -> list[tuple[Hashable, Hashable]]:
        """Pairs of :func:`next_wave`; ``estimates`` are ignored."""
        return next_wave(essay_ids, n_pairs, state, seed=seed, wave=wave, anchors=anchors)


@dataclass(frozen=True)
class AdaptivePairing(_StrategyBase):
    """``adaptive``: partners of maximal expected information, with exposure control.

    Round order is by comparisons so far (fewest first), so every essay is compared once per
    round and no essay falls behind: the exposure floor is the number of full rounds. Each
    essay's partner is, among the unused essays it has met least often (no repeat until
    necessary), the one maximising E[p(1 − p)], p = σ((θ̂ᵢ − θ̂ⱼ)/√(1 + π(seᵢ² + seⱼ²)/8)).

    Parameters
    ----------
    min_comparisons : int, default 2
        Warm-up: a wave that starts before every essay has this many comparisons (or gets no
        estimates) is paired as by ``balanced``.
    """

    name: ClassVar[str] = "adaptive"
    uses_estimates: ClassVar[bool] = True
    min_comparisons: int = 2

    def __post_init__(self) -> None:
        _positive_int("min_comparisons", self.min_comparisons)

    def next_wave(
        self,
        essay_ids: Sequence[Hashable],
        n_pairs: int,
        state: PairingState,
        *,
        seed: int,
        wave: int,
        anchors: Collection[Hashable] = (),
        estimates: Estimates | None = None,
    ) -> list[tuple[Hashable, Hashable]]:
        """Choose ``n_pairs`` ordered pairs; update ``state``."""
        ids = _check_ids(essay_ids)
        anchor_mask = _anchor_mask(ids, anchors)
        balanced = _balanced_partner_keys(anchor_mask)
        rng = rng_for("pairing", self.name, seed, wave)
        if not _warmed_up(ids, state, estimates, self.min_comparisons):
            return _build_wave(ids, n_pairs, state, rng, _count_order, balanced)
        theta, se = _aligned(estimates, ids)

        def partner_keys(i: int, cand: np.ndarray, counts: np.ndarray, noise: np.ndarray):
            return [-_expected_information(theta, se, i, cand)]

        return _build_wave(ids, n_pairs, state, rng, _count_order, partner_keys)


@dataclass(frozen=True)
class BoundaryPairing(_StrategyBase):
    """``boundary``: spend comparisons where a student's grade is uncertain.

    Round order: essays under the exposure floor first (fewest comparisons first), then
    students by grade uncertainty (1 − P(most probable grade), :func:`grade_uncertainty`,
    over the boundaries in question), most uncertain first; anchors last. A wave of fewer
    than n/2 pairs therefore reaches only the uncertain students and their partners; students
    whose grade is settled wait at the floor. The partner of student i is, among the unused
    essays it has met least often, the one nearest the boundary b* closest to θ̂ᵢ, with anchors
    counted ``anchor_preference`` logits nearer (an anchor near b* both tells which side of
    b* the student is on and pins b* itself). Essays with no boundary in question (anchors
    served for the floor) take the most informative partner, as in ``adaptive``.

    Parameters
    ----------
    min_comparisons : int, default 3
        Exposure floor in comparisons; also the warm-up: a wave that starts before every
        essay has this many comparisons (or gets no estimates) is paired as by ``balanced``.
    min_share : float, default 0.5
        Exposure floor as a share of the mean comparisons per essay; the floor is the larger.
    anchor_preference : float, default 0.3
        Logits by which an anchor is preferred as partner over an equally placed student.
    boundary_indices : tuple of int or None, default None
        Which boundaries are in question (0 = between the lowest two grades); None: all.
    """

    name: ClassVar[str] = "boundary"
    uses_estimates: ClassVar[bool] = True
    uses_boundaries: ClassVar[bool] = True
    wave_share: ClassVar[float] = 0.25
    min_comparisons: int = 3
    min_share: float = 0.5
    anchor_preference: float = 0.3
    boundary_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _positive_int("min_comparisons", self.min_comparisons)
        _fraction("min_share", self.min_share)
        if not (
            isinstance(self.anchor_preference, (int, float))
            and math.isfinite(self.anchor_preference)
        ):
            raise UsageError(
                f"pairing parameter anchor_preference must be a finite number of logits, "
                f"got {self.anchor_preference!r}"
            )
        if self.boundary_indices is not None:
            object.__setattr__(self, "boundary_indices", tuple(self.boundary_indices))
            for k in self.boundary_indices:
                _positive_int("boundary_indices", k)

    def _boundaries(self, estimates: Estimates) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(estimates.boundaries, dtype=float)
        s = np.asarray(estimates.boundary_se, dtype=float)
        if s.shape != b.shape:
            s = np.zeros_like(b)
        if b.size == 0:
            raise UsageError(
                "boundary pairing needs grade boundaries in the estimates; build them with "
                "Estimates.from_scores(scores, projection.calibration)"
            )
        if self.boundary_indices is None:
            return b, s
        bad = [k for k in self.boundary_indices if k >= b.size]
        if bad:
            raise UsageError(
                f"boundary_indices {bad} out of range: the scale has {b.size} boundaries "
                f"(0..{b.size - 1})"
            )
        keep = np.array(sorted(set(self.boundary_indices)), dtype=int)
        return b[keep], s[keep]

    def next_wave(
        self,
        essay_ids: Sequence[Hashable],
        n_pairs: int,
        state: PairingState,
        *,
        seed: int,
        wave: int,
        anchors: Collection[Hashable] = (),
        estimates: Estimates | None = None,
    ) -> list[tuple[Hashable, Hashable]]:
        """Choose ``n_pairs`` ordered pairs; update ``state``."""
        ids = _check_ids(essay_ids)
        anchor_mask = _anchor_mask(ids, anchors)
        balanced = _balanced_partner_keys(anchor_mask)
        rng = rng_for("pairing", self.name, seed, wave)
        if not _warmed_up(ids, state, estimates, self.min_comparisons):
            return _build_wave(ids, n_pairs, state, rng, _count_order, balanced)
        theta, se = _aligned(estimates, ids)
        bounds, bounds_se = self._boundaries(estimates)
        uncertainty = np.where(anchor_mask, -1.0, grade_uncertainty(theta, se, bounds, bounds_se))
        nearest = bounds[np.abs(theta[:, None] - bounds[None, :]).argmin(axis=1)]
        bonus = np.where(anchor_mask, self.anchor_preference, 0.0)

        def essay_keys(counts: np.ndarray, jitter: np.ndarray) -> list[np.ndarray]:
            floor = max(self.min_comparisons, math.floor(self.min_share * counts.mean()))
            below = counts < floor
            return [~below, np.where(below, counts, 0), -uncertainty]

        def partner_keys(i: int, cand: np.ndarray, counts: np.ndarray, noise: np.ndarray):
            if anchor_mask[i]:
                return [-_expected_information(theta, se, i, cand)]
            return [np.abs(theta[cand] - nearest[i]) - bonus[cand]]

        return _build_wave(ids, n_pairs, state, rng, essay_keys, partner_keys)


#: Strategy name → class; :func:`make_strategy` builds one by name.
PAIRING_STRATEGIES: Mapping[str, type] = {
    cls.name: cls for cls in (BalancedPairing, AdaptivePairing, BoundaryPairing)
}


def make_strategy(name: str, **params: Any) -> PairingStrategy:
    """Build the pairing strategy ``name`` with ``params``.

    Raises
    ------
    UsageError
        Unknown name (the message lists the known ones), unknown parameter (lists the valid
        ones) or a parameter value out of range.
    """
    try:
        cls = PAIRING_STRATEGIES[name]
    except (KeyError, TypeError):
        raise UsageError(
            f"unknown pairing strategy {name!r}; choose one of: {', '.join(PAIRING_STRATEGIES)}"
        ) from None
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(
            f"pairing strategy {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    return cls(**params)


def all_pairs_seen(essay_ids: Sequence[Hashable], state: PairingState) -> bool:
    """True when every unordered pair of ``essay_ids`` has been compared at least once."""
    n = len(essay_ids)
    return sum(1 for c in state.pair_counts.values() if c > 0) >= n * (n - 1) // 2


def position_balance(state: PairingState) -> np.ndarray:
    """Per essay, A appearances minus B appearances (0 is perfectly balanced)."""
    essays = set(state.position_a) | set(state.position_b)
    return np.array([state.position_a[e] - state.position_b[e] for e in essays])

"""Pair generation in waves: spread comparisons evenly, repeat no pair early, balance positions.

Pure: ids and counts in, a list of ordered pairs (position A, position B) out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cjlib.simulation import rng_for


def _pair_key(a: Hashable, b: Hashable) -> tuple:
    return (a, b) if str(a) <= str(b) else (b, a)


@dataclass
class PairingState:
    """What has been paired so far: unordered pair counts and A/B position counts per essay."""

    pair_counts: Counter = field(default_factory=Counter)
    position_a: Counter = field(default_factory=Counter)
    position_b: Counter = field(default_factory=Counter)

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

    def comparisons(self, essay: Hashable) -> int:
        """How many pairs ``essay`` has been in."""
        return self.position_a[essay] + self.position_b[essay]


def _orient(a: Hashable, b: Hashable, state: PairingState, coin: float) -> tuple:
    # The essay that has been in position A more often (relative to B) goes to B.
    lean_a = state.position_a[a] - state.position_b[a]
    lean_b = state.position_a[b] - state.position_b[b]
    if lean_a < lean_b or (lean_a == lean_b and coin < 0.5):
        return (a, b)
    return (b, a)


def next_wave(
    essay_ids: Sequence[Hashable],
    n_pairs: int,
    state: PairingState,
    *,
    seed: int,
    wave: int,
    anchors: Collection[Hashable] = (),
) -> list[tuple[Hashable, Hashable]]:
    """Choose the next ``n_pairs`` ordered pairs and record them in ``state``.

    Rules, in priority order:

    1. no pair is repeated until every pair has been seen as often (pairs with the lowest count
       are always preferred);
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
    anchors : collection, optional
        Ids of the anchor essays (only used to mix anchors with students).

    Returns
    -------
    list of (a, b)
        Ordered pairs, essay ``a`` shown in position A.
    """
    ids = list(essay_ids)
    if len(ids) < 2:
        raise ValueError("pairing needs at least 2 essays")
    rng = rng_for("pairing", seed, wave)
    anchor_set = set(anchors)
    chosen: list[tuple[Hashable, Hashable]] = []
    while len(chosen) < n_pairs:
        jitter = rng.random(len(ids))
        order = sorted(range(len(ids)), key=lambda i: (state.comparisons(ids[i]), jitter[i]))
        free = [ids[i] for i in order]
        used: set = set()
        for essay in free:
            if len(chosen) >= n_pairs:
                break
            if essay in used:
                continue
            partners = [p for p in free if p != essay and p not in used]
            if not partners:
                break
            noise = rng.random(len(partners))
            best = min(
                range(len(partners)),
                key=lambda k: (
                    state.pair_counts[_pair_key(essay, partners[k])],
                    state.comparisons(partners[k]),
                    (partners[k] in anchor_set) == (essay in anchor_set),
                    noise[k],
                ),
            )
            partner = partners[best]
            a, b = _orient(essay, partner, state, rng.random())
            state.add(a, b)
            chosen.append((a, b))
            used.update((essay, partner))
    return chosen


def all_pairs_seen(essay_ids: Sequence[Hashable], state: PairingState) -> bool:
    """True when every unordered pair of ``essay_ids`` has been compared at least once."""
    n = len(essay_ids)
    return sum(1 for c in state.pair_counts.values() if c > 0) >= n * (n - 1) // 2


def position_balance(state: PairingState) -> np.ndarray:
    """Per essay, A appearances minus B appearances (0 is perfectly balanced)."""
    essays = set(state.position_a) | set(state.position_b)
    return np.array([state.position_a[e] - state.position_b[e] for e in essays])

"""Judges: what decides a pair of essays, behind one small protocol.

A :class:`Judge` takes a :class:`PairRequest` and returns a :class:`JudgeResult`. The
:class:`SimulatedJudge` decides from known latent abilities with
:func:`cjlib.simulation.simulate_judgement`, reproducibly across processes; :func:`make_judge`
builds a judge by name.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cjlib.errors import UsageError
from cjlib.simulation import simulate_judgement, simulate_judgements

if TYPE_CHECKING:
    from cjlib.llm.audit import JudgeCall

#: Values of :attr:`JudgeResult.winner` for a decided pair.
WINNERS = ("essay_a", "essay_b")
#: :attr:`JudgeResult.error_code` of a simulated judge error.
SIMULATED_ERROR_CODE = "simulated_error"


@dataclass(frozen=True)
class PairRequest:
    """One pair sent to a judge.

    Attributes
    ----------
    request_correlation_id : str
        Id that ties the result (callback) to the request.
    essay_a_id, essay_b_id : str
        Essays in positions A and B.
    essay_a_text, essay_b_text : str
        Their texts.
    prompt : str or None
        The assignment prompt the essays answer.
    draw_key : str or None
        For simulated judges: a stable key for the random draw (e.g. ``"<batch>:<pair>"``).
        Correlation ids are random, so without it a simulated judge keys the draw by the
        ordered pair and how often it has seen that pair.
    """

    request_correlation_id: str
    essay_a_id: str
    essay_b_id: str
    essay_a_text: str
    essay_b_text: str
    prompt: str | None = None
    draw_key: str | None = None


@dataclass(frozen=True)
class JudgeResult:
    """A judge's answer to one :class:`PairRequest`.

    Attributes
    ----------
    request_correlation_id : str
        Copied from the request.
    winner : {'essay_a', 'essay_b'} or None
        None when the judge erred or the result was lost.
    confidence : float or None
        The judge's confidence in its decision, in [0.5, 1] for simulated judges.
    justification : str or None
        Free-text reason.
    error_code : str or None
        Set when the judge failed to decide (e.g. ``'simulated_error'``).
    lost : bool
        True when the callback never arrives: the caller must treat the request as pending
        and eventually time it out, not record this result.
    call : JudgeCall or None
        The audit record of an LLM (or replayed) call behind this result, for
        :func:`cjlib.db.judge_calls.record_judge_calls`; None for other judges.
    """

    request_correlation_id: str
    winner: str | None = None
    confidence: float | None = None
    justification: str | None = None
    error_code: str | None = None
    lost: bool = False
    call: JudgeCall | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.winner is not None and self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS} or None, not {self.winner!r}")
        if self.winner is not None and (self.lost or self.error_code is not None):
            raise ValueError("a lost or failed judgement cannot have a winner")


@runtime_checkable
class Judge(Protocol):
    """Anything that decides pairs: a simulated judge, an LLM client, a human panel adapter."""

    judge_id: str

    def judge(self, request: PairRequest) -> JudgeResult:
        """Decide ``request``; return a result carrying its ``request_correlation_id``."""
        ...


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must be between 0 and 1, not {value}")
    return value


def _justification(
    request: PairRequest, winner: str, theta_a: float, theta_b: float, p_a: float
) -> str:
    if theta_a == theta_b:
        signal = "neither essay had a higher ability signal"
    else:
        higher = "essay_a" if theta_a > theta_b else "essay_b"
        higher_id = request.essay_a_id if higher == "essay_a" else request.essay_b_id
        signal = f"{higher} ({higher_id}) had the higher ability signal"
    return (
        f"Simulated judgement, not a reading of the texts: chose {winner}; {signal} "
        f"(θ_A = {theta_a:.2f}, θ_B = {theta_b:.2f}, P(essay_a wins) = {p_a:.2f})."
    )


class SimulatedJudge:
    """A judge that decides from latent abilities by the Bradley–Terry model.

    P(A wins) = σ(discrimination·(θ_A − θ_B) + position_bias); with probability ``lost_rate``
    the result is lost, otherwise with ``error_rate`` the judge errs. See
    :func:`cjlib.simulation.simulate_judgement`.

    Parameters
    ----------
    abilities : mapping of str to float
        Essay id → latent ability θ (e.g. ``truth.csv``'s ``ability``); a pandas Series works.
    seed : int
        Seed of every draw.
    discrimination, position_bias, error_rate, lost_rate : float
        Model parameters as above.
    judge_id : str
        Recorded as the judge of each comparison.

    Notes
    -----
    Each draw is keyed by ``(seed, request.draw_key)`` when the request has a ``draw_key``,
    else by ``(seed, essay_a_id, essay_b_id, k)`` where ``k`` counts earlier requests for the
    same ordered pair on this instance. Either way the decisions are the same in any process,
    whatever the (random) correlation ids; the counter makes the second identical request an
    independent draw, but it restarts with a new instance, so a resumed run should set
    ``draw_key``. Thread-safe.
    """

    def __init__(
        self,
        abilities: Mapping[str, float],
        *,
        seed: int = 0,
        discrimination: float = 1.0,
        position_bias: float = 0.0,
        error_rate: float = 0.0,
        lost_rate: float = 0.0,
        judge_id: str = "simulated",
    ) -> None:
        self.abilities: dict[str, float] = {str(k): float(v) for k, v in abilities.items()}
        self.seed = int(seed)
        self.discrimination = float(discrimination)
        self.position_bias = float(position_bias)
        if not (math.isfinite(self.discrimination) and math.isfinite(self.position_bias)):
            raise UsageError("discrimination and position_bias must be finite numbers")
        self.error_rate = _check_rate("error_rate", error_rate)
        self.lost_rate = _check_rate("lost_rate", lost_rate)
        self.judge_id = judge_id
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SimulatedJudge(<{len(self.abilities)} essays>, seed={self.seed}, "
            f"discrimination={self.discrimination}, position_bias={self.position_bias}, "
            f"error_rate={self.error_rate}, lost_rate={self.lost_rate}, "
            f"judge_id={self.judge_id!r})"
        )

    def _ability(self, essay_id: str) -> float:
        try:
            return self.abilities[essay_id]
        except KeyError:
            raise UsageError(
                f"the simulated judge has no ability for essay {essay_id!r}; "
                "give it abilities for every essay in the batch (e.g. from truth.csv)"
            ) from None

    def _draw_key(self, request: PairRequest) -> str:
        if request.draw_key is not None:
            return f"key\x1f{request.draw_key}"
        pair = (request.essay_a_id, request.essay_b_id)
        with self._lock:
            occurrence = self._seen.get(pair, 0)
            self._seen[pair] = occurrence + 1
        return f"pair\x1f{pair[0]}\x1f{pair[1]}\x1f{occurrence}"

    def judge(self, request: PairRequest) -> JudgeResult:
        """Decide ``request`` from the two essays' abilities.

        Returns
        -------
        JudgeResult
            A winner with confidence max(p, 1 − p) and a justification saying it is simulated;
            or ``error_code='simulated_error'``; or ``lost=True``.

        Raises
        ------
        UsageError
            An essay id has no ability, or both positions hold the same essay.
        """
        _check_distinct(request)
        theta_a = self._ability(request.essay_a_id)
        theta_b = self._ability(request.essay_b_id)
        draw = simulate_judgement(
            theta_a,
            theta_b,
            seed=self.seed,
            key=self._draw_key(request),
            discrimination=self.discrimination,
            position_bias=self.position_bias,
            error_rate=self.error_rate,
            lost_rate=self.lost_rate,
        )
        return _simulated_result(request, draw.outcome, draw.confidence, draw.p_a, theta_a, theta_b)

    def judge_many(self, requests: Sequence[PairRequest]) -> list[JudgeResult]:
        """Decide ``requests`` in bulk: the decisions :meth:`judge` makes one by one.

        The batch runner calls this for judges that have it, instead of a thread per request.
        The model is evaluated on arrays (:func:`cjlib.simulation.simulate_judgements`).

        Raises
        ------
        UsageError
            As :meth:`judge`, before any draw is made (so the repeat counters of pairs without
            a ``draw_key`` are unchanged); the runner then decides the requests one by one, so
            that only the failing ones become failed comparisons.
        """
        for request in requests:
            _check_distinct(request)
        theta_a = [self._ability(r.essay_a_id) for r in requests]
        theta_b = [self._ability(r.essay_b_id) for r in requests]
        draws = simulate_judgements(
            theta_a,
            theta_b,
            seed=self.seed,
            keys=[self._draw_key(r) for r in requests],
            discrimination=self.discrimination,
            position_bias=self.position_bias,
            error_rate=self.error_rate,
            lost_rate=self.lost_rate,
        )
        return [
            _simulated_result(
                request,
                draws.outcome[i],
                float(draws.confidence[i]),
                float(draws.p_a[i]),
                theta_a[i],
                theta_b[i],
            )
            for i, request in enumerate(requests)
        ]


def _check_distinct(request: PairRequest) -> None:
    if request.essay_a_id == request.essay_b_id:
        raise UsageError(f"essay {request.essay_a_id!r} cannot be compared with itself")


def _simulated_result(
    request: PairRequest,
    outcome: str,
    confidence: float,
    p_a: float,
    theta_a: float,
    theta_b: float,
) -> JudgeResult:
    """The simulated judge's answer: lost, a simulated error, or a winner with reasons."""
    cid = request.request_correlation_id
    if outcome == "lost":
        return JudgeResult(cid, lost=True)
    if outcome == "error":
        return JudgeResult(cid, error_code=SIMULATED_ERROR_CODE)
    return JudgeResult(
        cid,
        winner=outcome,
        confidence=confidence,
        justification=_justification(request, outcome, theta_a, theta_b, p_a),
    )


def _simulated(abilities: Mapping[str, float] | None, seed: int, **params: Any) -> Judge:
    if abilities is None:
        raise UsageError(
            "the simulated judge needs abilities (essay id → latent ability), "
            "e.g. from the data set's truth.csv"
        )
    try:
        return SimulatedJudge(abilities, seed=seed, **params)
    except TypeError as err:
        raise UsageError(
            f"{err}; the simulated judge takes discrimination, position_bias, error_rate, "
            "lost_rate and judge_id"
        ) from None


def _llm(abilities: Mapping[str, float] | None, seed: int, **params: Any) -> Judge:
    # Imported here: the openai client is only needed when an LLM judge is asked for.
    from cjlib.llm import make_llm_judge

    return make_llm_judge(seed=seed, **params)


def _replay(abilities: Mapping[str, float] | None, seed: int, **params: Any) -> Judge:
    from cjlib.llm.replay import ReplayJudge

    try:
        return ReplayJudge(**params)
    except TypeError as err:
        raise UsageError(f"{err}; the replay judge takes calls and judge_id") from None


_FACTORIES: dict[str, Callable[..., Judge]] = {
    "simulated": _simulated,
    "mock": _simulated,
    "llm": _llm,
    "replay": _replay,
}

#: Names :func:`make_judge` accepts (``mock`` is an alias of ``simulated``).
JUDGE_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_judge(
    name: str,
    *,
    abilities: Mapping[str, float] | None = None,
    seed: int = 0,
    **params: Any,
) -> Judge:
    """Build a judge by name.

    Parameters
    ----------
    name : str
        One of :data:`JUDGE_NAMES` (case-insensitive): ``simulated`` (alias ``mock``),
        ``llm`` (:func:`cjlib.llm.make_llm_judge`) or ``replay``
        (:class:`cjlib.llm.replay.ReplayJudge`, ``calls=`` from
        :func:`cjlib.db.judge_calls.load_replay`).
    abilities : mapping of str to float, optional
        Essay id → latent ability; required by the simulated judge.
    seed : int
        Seed of the judge's draws.
    **params
        Passed to the judge (for ``simulated``: see :class:`SimulatedJudge`; for ``llm``:
        :func:`cjlib.llm.make_llm_judge`; for ``replay``: ``calls``).

    Returns
    -------
    Judge

    Raises
    ------
    UsageError
        Unknown name (the message lists the choices), missing abilities or unknown parameter.
    """
    key = name.strip().lower()
    try:
        factory = _FACTORIES[key]
    except KeyError:
        raise UsageError(
            f"unknown judge {name!r}; choose one of: {', '.join(JUDGE_NAMES)}"
        ) from None
    return factory(abilities, seed, **params)

"""The wave loop of a batch: claim or generate pairs, have them judged, record results in bulk.

One :class:`BatchRunner` is one worker (see :mod:`cjlib.workflow.workers`). Each turn, under
the batch's row lock, it either claims pending pairs (unclaimed, or owed by a dead worker), or
— when nothing is left to claim and no live worker still owes results — decides whether the
batch is done (budget used, every pair compared, scores stable) or generates the next wave.
The claimed pairs go to the judge, up to ``concurrency`` at a time, and the results are
written by a :class:`~cjlib.workflow.results.ResultWriter`. ``execute_batch`` runs one fresh
worker; ``resume_batch`` runs one (or, on PostgreSQL, several at once) on a batch a crash left
behind.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from cjlib.db import session_scope
from cjlib.db.bulk import insert_columns, timestamp_text
from cjlib.db.models import CJComparisonPair, ComparisonWinner, CoreCJState, utc_now
from cjlib.db.queries import decided_comparisons
from cjlib.db.repository import lock_batch_state, record_state_transition
from cjlib.errors import CJError, CompletionTimeout, JudgeAuthError
from cjlib.grades import ENG5_LEGACY
from cjlib.judges import Judge, JudgeResult, PairRequest
from cjlib.linalg import conjugate_gradient
from cjlib.pairing import (
    BalancedPairing,
    Estimates,
    PairingState,
    PairingStrategy,
    all_pairs_seen,
)
from cjlib.scoring import BTResult, fit_bradley_terry
from cjlib.stopping import (
    Progress,
    StoppingRule,
    first_reason,
    target_grade_certainty,
    target_reliability,
)
from cjlib.workflow.results import FLUSH_SIZE, ResultWriter
from cjlib.workflow.workers import (
    STALE_AFTER_SECONDS,
    ClaimedPair,
    Heartbeat,
    Worker,
    claim_pairs,
    pending_claimed_by_others,
    register_worker,
)

log = logging.getLogger(__name__)

#: Largest |Δθ| between waves that counts as stable.
STABILITY_THRESHOLD = 0.05
#: Comparisons every essay needs before the scores may count as stable.
STABILITY_MIN_COMPARISONS = 10
#: L2 penalty of the stability fit (it only compares θ between waves).
STABILITY_ALPHA = 0.03
#: Error code of a judge call that raised instead of answering.
JUDGE_EXCEPTION = "judge_exception"
#: Error code of a result that never arrived within the grace period.
CALLBACK_LOST = "callback_lost"
#: Seconds between polls while other workers finish their claims.
_POLL_SECONDS = 0.2
#: Error codes after which no further request can succeed (a missing or rejected API key):
#: the run stops at the first one instead of failing every pair with it.
FATAL_ERROR_CODES = frozenset({"auth_error"})
#: Completion reason when the cost cap stopped the run.
MAX_COST = "max_cost"

#: Requests per ``judge_many`` call of a bulk judge; its results are written in one flush.
BULK_CHUNK = 2000

#: Newton steps of the stability fit stop when no θ moves more than this.
_FIT_TOLERANCE = 1e-4


class _StabilityFit:
    r"""A θ-only, warm-started, incrementally fed Bradley–Terry fit for the stability rule.

    The stopping rule only compares θ between waves, so it needs neither standard errors nor
    a fit from scratch: decisions are read once (only pairs decided since the last look, above
    a watermark below which every pair is known to be decided), and θ is refined by a few
    Newton steps from the previous wave's θ. It maximises the L2-penalised log-likelihood

    .. math:: \ell(\theta) = \sum_{(w, l)} \log \sigma(\theta_w - \theta_l)
              - \alpha \lVert \theta \rVert^2,

    whose Hessian is minus a weighted graph Laplacian plus :math:`2 \alpha I` (sparse, positive
    definite for α > 0), so each step is one conjugate-gradient solve. Kept private to the
    runner: :func:`cjlib.scoring.fit_bradley_terry` (same objective) stays the fit of record.
    """

    def __init__(self, essay_ids: Sequence[str], alpha: float):
        self.index = {essay: i for i, essay in enumerate(essay_ids)}
        self.alpha = alpha
        self.theta = np.zeros(len(essay_ids))
        self._winners: list[int] = []
        self._losers: list[int] = []
        self._seen: set[int] = set()
        self._watermark = 0

    def update(self, session, batch_id: int) -> None:
        """Read the decisions recorded since the last call (by any worker)."""
        rows = session.execute(
            select(
                CJComparisonPair.id,
                CJComparisonPair.essay_a_els_id,
                CJComparisonPair.essay_b_els_id,
                CJComparisonPair.winner,
            ).where(
                CJComparisonPair.cj_batch_id == batch_id,
                CJComparisonPair.id > self._watermark,
                CJComparisonPair.winner.is_not(None),
            )
        ).all()
        for pair_id, a, b, winner in rows:
            if pair_id in self._seen:
                continue
            self._seen.add(pair_id)
            if winner == ComparisonWinner.ESSAY_A:
                self._winners.append(self.index[a])
                self._losers.append(self.index[b])
            elif winner == ComparisonWinner.ESSAY_B:
                self._winners.append(self.index[b])
                self._losers.append(self.index[a])
        lowest_pending = session.scalar(
            select(func.min(CJComparisonPair.id)).where(
                CJComparisonPair.cj_batch_id == batch_id, CJComparisonPair.winner.is_(None)
            )
        )
        if lowest_pending is not None:
            watermark = int(lowest_pending) - 1
        else:
            watermark = max(self._seen, default=self._watermark)
        if watermark > self._watermark:
            self._watermark = watermark
            self._seen = {pair_id for pair_id in self._seen if pair_id > watermark}

    def counts(self) -> np.ndarray:
        """Successful comparisons per essay."""
        n = len(self.theta)
        return np.bincount(self._winners, minlength=n) + np.bincount(self._losers, minlength=n)

    def fit(self, max_steps: int = 50) -> np.ndarray:
        """θ by Newton steps from the last θ; returns a copy."""
        from scipy.sparse import csr_matrix

        if not self._winners:
            return self.theta.copy()
        n = len(self.theta)
        w = np.asarray(self._winners)
        lo = np.asarray(self._losers)
        # The Hessian's pattern: off-diagonal (w, l) and (l, w) per decision, then the diagonal;
        # duplicates (pairs met more than once) are summed by the CSR conversion.
        rows = np.concatenate([w, lo, np.arange(n)])
        cols = np.concatenate([lo, w, np.arange(n)])
        theta = self.theta
        for _ in range(max_steps):
            p = 1.0 / (1.0 + np.exp(-(theta[w] - theta[lo])))
            gradient = np.bincount(w, 1.0 - p, n) - np.bincount(lo, 1.0 - p, n)
            gradient -= 2.0 * self.alpha * theta
            weight = p * (1.0 - p)
            diagonal = np.bincount(w, weight, n) + np.bincount(lo, weight, n) + 2.0 * self.alpha
            hessian = csr_matrix(
                (np.concatenate([-weight, -weight, diagonal]), (rows, cols)), shape=(n, n)
            )
            # An inexact Newton step (rtol 1e-4) is enough: the last steps are below
            # _FIT_TOLERANCE, so θ is exact to far better than the stability threshold.
            step = conjugate_gradient(hessian.dot, gradient, diagonal, rtol=1e-4, maxiter=500)
            largest = float(np.max(np.abs(step)))
            # Damped: a full Newton step can overshoot for an essay that won (almost) always.
            theta = theta + (step if largest <= 1.0 else step / largest)
            if largest < _FIT_TOLERANCE:
                break
        self.theta = theta
        return theta.copy()


@dataclass(frozen=True)
class RunOptions:
    """How a worker runs a batch's waves.

    Attributes
    ----------
    max_comparisons : int
        Budget: at most this many pairs are ever created for the batch.
    seed : int
        Seed of the pairing.
    wave_size : int or None
        Pairs per wave; default half the number of essays (each essay once per wave).
    stability_threshold : float
        See :data:`STABILITY_THRESHOLD`; ``0`` turns the stability rule off.
    callback_grace : float
        Seconds a lost result is waited for after the last result of its turn.
    deadline : float
        ``time.monotonic()`` value after which :class:`CompletionTimeout` is raised.
    concurrency : int
        Judge requests in flight at once (thread pool or asyncio tasks).
    stale_after : float
        Seconds of silence after which another worker counts as dead.
    pairing : PairingStrategy
        How each wave is paired (default ``balanced``); a strategy that ``uses_estimates`` gets
        a Bradley–Terry fit of the decisions so far before each wave, with the grade
        boundaries of the anchors' projection when it ``uses_boundaries``.
    target_reliability : float or None
        Stop (reason ``target_reliability``) once the reliability the design cannot inflate
        reaches this (:func:`cjlib.design.honest_reliability`: split-half under ``balanced``,
        the null-adjusted SSR under ``adaptive`` / ``boundary``).
    target_grade_certainty : float or None
        Stop (reason ``target_grade_certainty``) once every student's most probable grade has
        at least this probability.
    max_cost_usd : float or None
        Stop submitting pairs once the judge's cost estimate (``judge.costs``, a
        :class:`~cjlib.llm.costs.CostTracker`) would pass this; the batch then finalizes
        with completion reason ``max_cost``. Checked before each turn for all its pairs.
    both_orders : bool
        Each generated pair is also sent mirrored (BA), in the same wave, as its own pair;
        both count against ``max_comparisons``.
    """

    max_comparisons: int
    seed: int = 0
    wave_size: int | None = None
    stability_threshold: float = STABILITY_THRESHOLD
    callback_grace: float = 5.0
    deadline: float = math.inf
    concurrency: int = 4
    stale_after: float = STALE_AFTER_SECONDS
    pairing: PairingStrategy = field(default_factory=BalancedPairing)
    target_reliability: float | None = None
    target_grade_certainty: float | None = None
    max_cost_usd: float | None = None
    both_orders: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """How the worker's loop ended."""

    reason: str | None
    waves: int
    already_final: bool = False
    judged: int = 0


@dataclass
class _Turn:
    """What the worker does next: judge ``claimed``, wait, or stop with ``reason``."""

    claimed: list[ClaimedPair] = field(default_factory=list)
    reason: str | None = None
    wait: bool = False
    already_final: bool = False


def _failed_result(request: PairRequest, err: BaseException) -> JudgeResult:
    return JudgeResult(
        request.request_correlation_id,
        error_code=JUDGE_EXCEPTION,
        justification=f"{type(err).__name__}: {err}"[:1000],
    )


def _judge_one(judge: Judge, request: PairRequest) -> JudgeResult:
    """The judge's answer, or a failed result carrying its exception: never swallowed."""
    try:
        return judge.judge(request)
    except Exception as err:  # any judge failure is a failed comparison with the error
        log.warning("judge %s raised on %s: %s", judge.judge_id, request.request_correlation_id,
                    err)  # fmt: skip
        return _failed_result(request, err)


def _judge_many(judge: Judge, requests: Sequence[PairRequest]) -> list[JudgeResult]:
    try:
        return list(judge.judge_many(requests))  # type: ignore[attr-defined]
    except Exception:  # isolate the request that fails
        return [_judge_one(judge, r) for r in requests]


async def _judge_async(
    judge: Judge, requests: Sequence[PairRequest], concurrency: int, sink: Callable
) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    stopped = False

    async def one(request: PairRequest) -> None:
        nonlocal stopped
        async with semaphore:
            # A request that was waiting when the sink stopped the run (a rejected key) is
            # not sent: the cancellation below may reach it only after it got the semaphore.
            if stopped:
                return
            try:
                result = await judge.ajudge(request)  # type: ignore[attr-defined]
            except Exception as err:  # a failed comparison carrying the error
                result = _failed_result(request, err)
        try:
            sink(result)
        except BaseException:
            stopped = True
            raise

    tasks = [asyncio.ensure_future(one(r)) for r in requests]
    try:
        await asyncio.gather(*tasks)
    finally:
        # After a sink error (a fatal judge answer) or a timeout, no other request may
        # finish into the sink: cancel them before the client goes away.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # An HTTP judge keeps one client per event loop; this loop ends with the turn.
        aclose = getattr(judge, "aclose", None)
        if inspect.iscoroutinefunction(aclose):
            await aclose()


def _run_coroutine(coroutine) -> None:
    """``asyncio.run``, also where this thread already runs a loop (a Jupyter kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    # asyncio.run refuses to nest: run on a fresh loop in a helper thread and wait for it.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cj-judge-loop") as pool:
        pool.submit(asyncio.run, coroutine).result()


def judge_requests(
    judge: Judge,
    requests: Sequence[PairRequest],
    *,
    concurrency: int,
    sink: Callable[[JudgeResult], None],
    deadline: float = math.inf,
) -> None:
    """Have ``judge`` decide ``requests``, passing each result to ``sink`` as it arrives.

    A judge with ``judge_many`` decides in bulk; one with an ``async def ajudge`` runs with up
    to ``concurrency`` requests in flight on an event loop; any other judge's ``judge`` runs in
    a pool of ``concurrency`` threads. An exception from the judge becomes a failed result
    with error code ``judge_exception`` and the error text.

    Raises
    ------
    TimeoutError
        ``deadline`` (a ``time.monotonic()`` value) passed before every result arrived.
    """
    if hasattr(judge, "judge_many"):
        for start in range(0, len(requests), BULK_CHUNK):
            if time.monotonic() >= deadline:
                raise TimeoutError
            for result in _judge_many(judge, requests[start : start + BULK_CHUNK]):
                sink(result)
        return
    if inspect.iscoroutinefunction(getattr(judge, "ajudge", None)):
        remaining = deadline - time.monotonic()
        coroutine = _judge_async(judge, requests, concurrency, sink)
        if not math.isinf(remaining):
            coroutine = asyncio.wait_for(coroutine, max(remaining, 0.0))
        _run_coroutine(coroutine)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cj-judge") as pool:
        pending = {pool.submit(_judge_one, judge, r) for r in requests}
        while pending:
            timeout = None if math.isinf(deadline) else max(deadline - time.monotonic(), 0.0)
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                for future in pending:
                    future.cancel()
                raise TimeoutError
            for future in done:
                sink(future.result())


class BatchRunner:
    """Runs a batch's waves as one worker until the batch is done, then returns why.

    Parameters
    ----------
    engine : Engine
    batch_id : int
    judge : Judge
    texts : mapping of str to str
        Essay id → text, for every essay of the batch (anchors included).
    anchors : collection of str
        Anchor essay ids (the pairing mixes anchors and students).
    options : RunOptions
    prompt : str, optional
        The assignment prompt passed to the judge.
    on_progress : callable, optional
        Called with (results recorded, budget) after each write.
    anchor_grades : mapping of str to str, optional
        Anchor id → expert grade on ``grade_scale``: ``boundary`` pairing and the
        grade-certainty rule project grades between waves.
    grade_scale : str, optional
        The anchors' grade scale.
    """

    def __init__(
        self,
        engine: Engine,
        batch_id: int,
        judge: Judge,
        *,
        texts: Mapping[str, str],
        anchors: Iterable[str],
        options: RunOptions,
        prompt: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        anchor_grades: Mapping[str, str] | None = None,
        grade_scale: str | None = None,
    ):
        self.engine, self.batch_id, self.judge = engine, batch_id, judge
        self.texts, self.anchors = dict(texts), frozenset(anchors)
        self.essay_ids = sorted(self.texts)
        self.options, self.prompt = options, prompt
        self.on_progress = on_progress
        self._recorded = 0
        self._pairing = PairingState()
        self._last_pair_id = 0
        self._previous_theta: np.ndarray | None = None
        self._fit = _StabilityFit(self.essay_ids, STABILITY_ALPHA)
        self._waves = 0
        self.anchor_grades = dict(anchor_grades or {})
        self.grade_scale = grade_scale
        self._fit_cache: tuple[int, pd.DataFrame, BTResult | None] | None = None
        self._rules = self._stopping_rules()
        #: The last value each stopping rule measured (stored with the batch when one fires).
        self.measured: dict[str, float] = {}

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Work until the batch needs finalizing (or is final); returns the reason."""
        worker = register_worker(self.engine, self.batch_id, stale_after=self.options.stale_after)
        # A bulk judge's answers arrive a chunk at a time: one write per chunk.
        bulk = hasattr(self.judge, "judge_many")
        writer = ResultWriter(
            self.engine, self.batch_id, judge_id=self.judge.judge_id, on_applied=self._applied,
            flush_size=BULK_CHUNK if bulk else FLUSH_SIZE,
        )  # fmt: skip
        judged = 0
        with Heartbeat(self.engine, worker):
            while True:
                self._check_deadline()
                turn = self._next_turn(worker)
                if turn.already_final:
                    return RunOutcome(None, self._waves, already_final=True, judged=judged)
                if turn.reason is not None:
                    return RunOutcome(turn.reason, self._waves, judged=judged)
                if turn.wait:
                    time.sleep(_POLL_SECONDS)
                    continue
                self._judge(turn.claimed, writer)
                judged += len(turn.claimed)

    def _applied(self, n: int) -> None:
        self._recorded += n
        if self.on_progress is not None:
            self.on_progress(self._recorded, self.options.max_comparisons)

    def _check_deadline(self) -> None:
        if time.monotonic() >= self.options.deadline:
            raise CompletionTimeout(
                f"batch {self.batch_id} did not complete within the completion timeout; it "
                f"stays in WAITING_CALLBACKS — continue it with `cj batch resume "
                f"{self.batch_id}` or see `cj batch inspect {self.batch_id}`"
            )

    # -- one turn under the batch lock ---------------------------------------------------

    def _next_turn(self, worker: Worker) -> _Turn:
        with session_scope(self.engine) as session:
            state = lock_batch_state(session, self.batch_id)
            if state.state.value in ("COMPLETED", "FAILED", "CANCELLED", "SCORING"):
                return _Turn(already_final=True)
            per_turn = self._affordable(self._wave_size() * self._orders())
            if per_turn == 0:
                return self._stop(state, MAX_COST, session)
            claimed = claim_pairs(session, worker, per_turn, stale_after=self.options.stale_after)
            if claimed:
                return _Turn(claimed=claimed)
            if pending_claimed_by_others(session, worker, stale_after=self.options.stale_after):
                return _Turn(wait=True)
            self._refresh_pairing(session)
            reason = self._stop_reason(session, state.total_comparisons)
            if reason is not None:
                return self._stop(state, reason, session)
            return _Turn(claimed=self._generate_wave(session, state, worker, per_turn))

    def _stop(self, state, reason: str, session=None) -> _Turn:
        if session is not None and state.state is CoreCJState.GENERATING_PAIRS:
            record_state_transition(
                session, self.batch_id, CoreCJState.WAITING_CALLBACKS,
                reason="no more pairs", state_row=state,
            )  # fmt: skip
        if reason == MAX_COST:
            log.warning("batch %s: stopped submitting pairs, the cost estimate would pass "
                        "--max-cost-usd %s", self.batch_id, self.options.max_cost_usd)  # fmt: skip
        return _Turn(reason=reason)

    def _wave_size(self) -> int:
        return self.options.wave_size or self.options.pairing.wave_size(len(self.essay_ids))

    def _orders(self) -> int:
        return 2 if self.options.both_orders else 1

    def _affordable(self, wanted: int) -> int:
        """How many of ``wanted`` requests the cost cap still allows (all without a cap).

        The estimate of the next calls is the mean cost per call so far
        (:meth:`~cjlib.llm.costs.CostTracker.would_exceed`), so the first turn always runs.
        With both orders the count is rounded down to whole AB/BA couples.
        """
        costs = getattr(self.judge, "costs", None)
        if self.options.max_cost_usd is None or costs is None:
            return wanted
        n = wanted
        while n > 0 and costs.would_exceed(self.options.max_cost_usd, more_calls=n):
            n -= 1
        return n - n % self._orders()

    def _refresh_pairing(self, session) -> None:
        """Add pairs created since the last look (by any worker) to the pairing state."""
        rows = session.execute(
            select(
                CJComparisonPair.id,
                CJComparisonPair.essay_a_els_id,
                CJComparisonPair.essay_b_els_id,
            )
            .where(
                CJComparisonPair.cj_batch_id == self.batch_id,
                CJComparisonPair.id > self._last_pair_id,
            )
            .order_by(CJComparisonPair.id)
        ).all()
        for pair_id, a, b in rows:
            self._pairing.add(a, b)
            self._last_pair_id = pair_id

    def _stop_reason(self, session, total: int) -> str | None:
        # With both orders a pair needs two comparisons of the budget.
        if total + self._orders() > self.options.max_comparisons:
            return "budget_exhausted"
        if all_pairs_seen(self.essay_ids, self._pairing):
            return "all_pairs_compared"
        reason = self._target_reason(session)
        if reason is not None:
            return reason
        if self._stable(session):
            return "stable"
        return None

    # -- stopping rules and estimates between waves -----------------------------------------

    def _stopping_rules(self) -> list[StoppingRule]:
        from cjlib.design import honest_reliability

        rules: list[StoppingRule] = []
        options = self.options
        if options.target_grade_certainty is not None:
            rules.append(target_grade_certainty(options.target_grade_certainty))
        if options.target_reliability is not None:
            fn = honest_reliability(
                options.pairing, self.essay_ids, seed=options.seed,
                anchor_grades=self.anchor_grades, scale=self.grade_scale or ENG5_LEGACY,
                alpha=STABILITY_ALPHA, gate=options.target_reliability,
            )  # fmt: skip
            # A split-half of a handful of decisions is noise: wait for one full round.
            rules.append(target_reliability(options.target_reliability, fn,
                                            min_comparisons=len(self.essay_ids)))  # fmt: skip
        return rules

    def _decided_fit(self, session) -> tuple[pd.DataFrame, BTResult | None]:
        """The decided comparisons and their fit (penalty 0.03), once per batch size."""
        frame = decided_comparisons(session, self.batch_id)
        if self._fit_cache is not None and self._fit_cache[0] == len(frame):
            return self._fit_cache[1], self._fit_cache[2]
        try:
            fit = fit_bradley_terry(frame, alpha=STABILITY_ALPHA) if len(frame) else None
        except (ValueError, CJError) as err:
            log.info("batch %s: no fit between waves yet: %s", self.batch_id, err)
            fit = None
        self._fit_cache = (len(frame), frame, fit)
        return frame, fit

    def _grade_probabilities(self, fit: BTResult | None) -> pd.DataFrame | None:
        """Every student's projected grade probabilities; None until all can be projected."""
        from cjlib.projection import project_grades

        if fit is None or not self.anchor_grades:
            return None
        students = [e for e in self.essay_ids if e not in self.anchors]
        if not set(students) <= set(fit.scores.index):
            return None  # a student not compared yet has no grade at all
        try:
            scale = self.grade_scale or ENG5_LEGACY
            return project_grades(fit.scores, self.anchor_grades, scale=scale).grades
        except CJError as err:
            log.info("batch %s: grades not projectable yet: %s", self.batch_id, err)
            return None

    def _target_reason(self, session) -> str | None:
        if not self._rules:
            return None
        frame, fit = self._decided_fit(session)
        needs_grades = self.options.target_grade_certainty is not None
        progress = Progress(
            n_comparisons=len(frame),
            comparisons=frame if len(frame) else None,
            grade_probabilities=self._grade_probabilities(fit) if needs_grades else None,
        )
        for rule in self._rules:
            self.measured[rule.reason] = rule.measure(progress)
        reason = first_reason(self._rules, progress)
        if reason is not None:
            log.info("batch %s: stopping rule %s fired (%s)", self.batch_id, reason,
                     self.measured)  # fmt: skip
            self._record_stop(session, reason)
        return reason

    def _record_stop(self, session, reason: str) -> None:
        """Store which rule fired and what every rule measured, in the upload's metadata."""
        from cjlib.db.models import CJBatchUpload

        upload = session.get(CJBatchUpload, self.batch_id)
        meta = dict(upload.processing_metadata or {})
        meta["stopping"] = {
            "rule": reason,
            "measured": {k: (v if math.isfinite(v) else None) for k, v in self.measured.items()},
        }
        upload.processing_metadata = meta

    def _estimates(self, session) -> Estimates | None:
        """Estimates for an adaptive strategy; None during its warm-up or while unfittable."""
        from cjlib.design import strategy_estimates, warm_up

        strategy = self.options.pairing
        if not strategy.uses_estimates:
            return None
        if min(self._pairing.comparisons(e) for e in self.essay_ids) < warm_up(strategy):
            return None
        frame, fit = self._decided_fit(session)
        if fit is None:
            return None
        try:
            scale = self.grade_scale or ENG5_LEGACY
            return strategy_estimates(strategy, frame, self.anchor_grades, scale, scores=fit.scores)
        except CJError as err:
            # e.g. boundary pairing before the anchors can place the grades: pair balanced.
            log.info("batch %s: no estimates for %s pairing yet: %s", self.batch_id,
                     strategy.name, err)  # fmt: skip
            return None

    def _stable(self, session) -> bool:
        """From the third wave: no θ moved more than the threshold, every essay has ≥ 10."""
        if self.options.stability_threshold <= 0:
            return False
        least = min(self._pairing.comparisons(e) for e in self.essay_ids)
        if least < STABILITY_MIN_COMPARISONS:
            self._previous_theta = None
            return False
        self._fit.update(session, self.batch_id)
        if int(self._fit.counts().min()) < STABILITY_MIN_COMPARISONS:
            return False
        theta = self._fit.fit()
        previous, self._previous_theta = self._previous_theta, theta
        if previous is None or self._waves < 3:
            return False
        change = float(np.max(np.abs(theta - previous)))
        log.info("batch %s: max |Δθ| since the last check %.3f", self.batch_id, change)
        return change < self.options.stability_threshold

    def _generate_wave(
        self, session, state, worker: Worker, affordable: int | None = None
    ) -> list[ClaimedPair]:
        """Create the next wave's pairs, claimed by ``worker``, in the caller's transaction.

        With ``both_orders`` each chosen pair (a, b) is followed by its mirror (b, a); the
        mirror's metadata names the forward pair's correlation id.
        """
        wave = state.current_iteration + 1
        self._waves += 1
        orders = self._orders()
        n_pairs = min(
            self._wave_size(),
            (self.options.max_comparisons - state.total_comparisons) // orders,
            (affordable if affordable is not None else math.inf) // orders,
        )
        chosen = self.options.pairing.next_wave(
            self.essay_ids, int(n_pairs), self._pairing, seed=self.options.seed, wave=wave,
            anchors=self.anchors, estimates=self._estimates(session),
        )  # fmt: skip
        pairs: list[tuple[str, str, dict]] = []
        for a, b in chosen:
            pairs.append((a, b, {"wave": wave}))
            if self.options.both_orders:
                self._pairing.add(b, a)
                pairs.append((b, a, {"wave": wave, "order": "BA"}))
        record_state_transition(
            session, self.batch_id, CoreCJState.GENERATING_PAIRS, reason=f"wave {wave}",
            state_row=state,
        )  # fmt: skip
        now = utc_now()
        rows = [
            {
                "essay_a_els_id": a,
                "essay_b_els_id": b,
                "request_correlation_id": str(uuid.uuid4()),
                "processing_metadata": meta,
            }
            for a, b, meta in pairs
        ]
        for forward, mirror in itertools.pairwise(rows):
            if mirror["processing_metadata"].get("order") == "BA":
                mirror["processing_metadata"]["mirror_of"] = forward["request_correlation_id"]
        self._last_pair_id = self._insert_pairs(session, rows, worker, now)
        state.total_comparisons += len(rows)
        state.submitted_comparisons += len(rows)
        state.current_iteration = wave
        state.last_activity_at = now
        record_state_transition(
            session, self.batch_id, CoreCJState.WAITING_CALLBACKS,
            reason=f"wave {wave}: {len(rows)} pairs submitted", state_row=state,
        )  # fmt: skip
        log.info("batch %s wave %d: %d pairs (%d/%d)", self.batch_id, wave, len(rows),
                 state.total_comparisons, self.options.max_comparisons)  # fmt: skip
        return [
            ClaimedPair(
                pair_id=0,
                request_correlation_id=row["request_correlation_id"],
                essay_a_id=row["essay_a_els_id"],
                essay_b_id=row["essay_b_els_id"],
                wave=wave,
            )
            for row in rows
        ]

    def _insert_pairs(self, session, rows: list[dict], worker: Worker, now) -> int:
        """Insert a wave's pairs, claimed by ``worker``, in one bulk statement.

        Returns the batch's highest pair id afterwards (pairs are generated under the batch
        lock, so these are the newest).
        """
        n = len(rows)
        dialect = session.get_bind().dialect.name
        insert_columns(
            session,
            CJComparisonPair.__table__,
            {
                "cj_batch_id": [self.batch_id] * n,
                "essay_a_els_id": [row["essay_a_els_id"] for row in rows],
                "essay_b_els_id": [row["essay_b_els_id"] for row in rows],
                "request_correlation_id": [row["request_correlation_id"] for row in rows],
                "judge_id": [self.judge.judge_id] * n,
                "submitted_at": [timestamp_text(dialect, now)] * n,
                "processing_metadata": [json.dumps(row["processing_metadata"]) for row in rows],
                "claimed_by": [worker.worker_id] * n,
            },
        )
        return int(
            session.scalar(
                select(func.max(CJComparisonPair.id)).where(
                    CJComparisonPair.cj_batch_id == self.batch_id
                )
            )
        )

    # -- judging ----------------------------------------------------------------------------

    def _requests(self, claimed: Sequence[ClaimedPair]) -> Iterator[PairRequest]:
        for index, pair in enumerate(claimed):
            yield PairRequest(
                request_correlation_id=pair.request_correlation_id,
                essay_a_id=pair.essay_a_id,
                essay_b_id=pair.essay_b_id,
                essay_a_text=self.texts[pair.essay_a_id],
                essay_b_text=self.texts[pair.essay_b_id],
                prompt=self.prompt,
                draw_key=f"{pair.essay_a_id}|{pair.essay_b_id}|{pair.wave}|{index}",
            )

    def _judge(self, claimed: Sequence[ClaimedPair], writer: ResultWriter) -> None:
        lost: list[str] = []

        def sink(result: JudgeResult) -> None:
            if result.error_code in FATAL_ERROR_CODES:
                # Not recorded: the pair stays pending, to be sent again by `cj batch resume`
                # once the key is fixed. Raising here ends the turn (asyncio.run cancels the
                # requests still waiting).
                raise JudgeAuthError(self._fatal_message(result))
            if result.lost:
                lost.append(result.request_correlation_id)
            else:
                writer.add(result)

        try:
            judge_requests(
                self.judge,
                list(self._requests(claimed)),
                concurrency=self.options.concurrency,
                sink=sink,
                deadline=self.options.deadline,
            )
        except TimeoutError:
            writer.flush()
            self._check_deadline()
            raise
        except JudgeAuthError:
            writer.flush()
            raise
        writer.flush()
        if lost:
            self._close_lost(lost, writer)

    def _fatal_message(self, result: JudgeResult) -> str:
        call = getattr(result, "call", None)
        detail = getattr(call, "error_detail", None) or result.error_code
        return (
            f"the LLM server refused the API key ({detail}); batch {self.batch_id} is stopped "
            f"with its decided pairs kept: set CJ_LLM_API_KEY to a valid key and run "
            f"`cj batch resume {self.batch_id}`"
        )

    def _close_lost(self, lost: Sequence[str], writer: ResultWriter) -> None:
        """Results that never came: wait the grace period, then record them as failed."""
        grace_end = time.monotonic() + self.options.callback_grace
        while time.monotonic() < min(grace_end, self.options.deadline):
            time.sleep(min(0.2, max(grace_end - time.monotonic(), 0.0)))
        self._check_deadline()
        for rid in lost:
            writer.add(JudgeResult(rid, error_code=CALLBACK_LOST))
        writer.flush()
        log.warning("batch %s: %d results declared lost", self.batch_id, len(lost))

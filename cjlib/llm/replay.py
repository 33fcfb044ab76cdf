"""Replay: decide pairs from stored LLM calls, without any server.

A notebook re-executed in CI must reproduce a paid run exactly, so :class:`ReplayJudge`
returns the stored decision (winner, confidence, justification, or the stored failure) of
the call that answered the same request. Requests are matched first by correlation id (a
resumed batch re-sends the same id), else by the essays in positions A and B and how often
that ordered pair was asked before (a re-run batch gets new random correlation ids but, with
the same seed and the same decisions, the same pairs in the same order). Positions are never
swapped: with position bias, the BA answer is not the AB answer. A request with no stored
call fails with ``replay_missing``; it is never decided.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from cjlib.judges import JudgeResult, PairRequest
from cjlib.llm.audit import JudgeCall
from cjlib.llm.contract import REPLAY_MISSING


class ReplayJudge:
    """A judge that answers from stored :class:`~cjlib.llm.audit.JudgeCall` records.

    Parameters
    ----------
    calls : iterable of JudgeCall
        Stored calls in the order they were made (e.g. from
        :func:`cjlib.db.judge_calls.load_replay`). When one correlation id has several calls
        (a pair re-sent after a crash), the last one is its answer.
    judge_id : str
        Recorded judge of each comparison.

    Notes
    -----
    The result carries the stored call re-keyed to the new request's correlation id, so the
    replayed batch keeps the original audit trail (model, template hash, tokens).
    """

    def __init__(self, calls: Iterable[JudgeCall], *, judge_id: str = "replay") -> None:
        self.judge_id = judge_id
        self._by_id: dict[str, JudgeCall] = {}
        for call in calls:
            # Later calls of one correlation id replace earlier ones, keeping first position.
            self._by_id[call.request_correlation_id] = call
        self._by_pair: dict[tuple[str, str], list[JudgeCall]] = {}
        for call in self._by_id.values():
            self._by_pair.setdefault((call.essay_a_id, call.essay_b_id), []).append(call)
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReplayJudge(<{len(self._by_id)} stored calls>, judge_id={self.judge_id!r})"

    def __len__(self) -> int:
        return len(self._by_id)

    def _find(self, request: PairRequest) -> JudgeCall | None:
        with self._lock:
            call = self._by_id.get(request.request_correlation_id)
            if call is None:
                queue = self._by_pair.get((request.essay_a_id, request.essay_b_id), [])
                call = next((c for c in queue if c.request_correlation_id not in self._used), None)
            if call is not None:
                self._used.add(call.request_correlation_id)
            return call

    def judge(self, request: PairRequest) -> JudgeResult:
        """The stored answer to ``request``, or a ``replay_missing`` failure."""
        call = self._find(request)
        if call is None:
            return JudgeResult(request.request_correlation_id, error_code=REPLAY_MISSING)
        rekeyed = dataclasses.replace(call, request_correlation_id=request.request_correlation_id)
        return rekeyed.to_result()

    async def ajudge(self, request: PairRequest) -> JudgeResult:
        """Asynchronous form of :meth:`judge` (no waiting involved)."""
        return self.judge(request)

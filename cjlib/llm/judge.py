"""An LLM judge over any OpenAI-compatible chat-completions server.

:class:`LLMJudge` renders a prompt template with the assignment and the two texts (never the
essay ids), asks for the answer contract of :mod:`cjlib.llm.contract`, and returns a
:class:`~cjlib.judges.JudgeResult` that carries a :class:`~cjlib.llm.audit.JudgeCall`.
Transport uses the official ``openai`` client with its own retries off (``max_retries=0``):
our :class:`~cjlib.llm.retry.RetryPolicy` honours ``Retry-After`` and records every attempt,
and a :class:`~cjlib.llm.ratelimit.RequestRateLimiter` caps requests per minute.

It has both judge forms: ``await judge.ajudge(request)`` on the caller's event loop (one HTTP
client per loop), and the synchronous ``judge.judge(request)``, which runs ``ajudge`` on a
private event-loop thread, so it also works from threads and inside Jupyter's running loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai

from cjlib.defaults import DEFAULT_GRADE_SCALE
from cjlib.grades import GradeScale, get_grade_scale
from cjlib.judges import JudgeResult, PairRequest
from cjlib.llm import contract
from cjlib.llm.audit import JudgeCall
from cjlib.llm.costs import CostTracker
from cjlib.llm.prompts import PromptTemplate, load_prompt_template
from cjlib.llm.ratelimit import RequestRateLimiter
from cjlib.llm.redact import MASK, install_log_redaction, mask_secrets
from cjlib.llm.retry import is_retryable_status, parse_retry_after
from cjlib.llm.settings import LLMConfig

#: Stored raw response bodies are cut here: a runaway server must not fill the database.
MAX_RAW_CHARS = 65536
# openai requires some key; servers without auth ignore this one, hosted ones answer 401.
_NO_KEY = "no-key-set"


@dataclass
class _Attempts:
    """What the attempts of one call have seen so far."""

    errors: list[str] = field(default_factory=list)
    status: int | None = None
    latency_s: float | None = None
    body: str | None = None
    error_code: str | None = None
    error_detail: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _usage(data: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def _message(data: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(content, refusal, finish_reason)`` of the first choice; ValueError if there is none."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ValueError("the first choice has no message")
    content, refusal = message.get("content"), message.get("refusal")
    return (
        content if isinstance(content, str) else None,
        refusal if isinstance(refusal, str) else None,
        choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
    )


class LLMJudge:
    """A :class:`~cjlib.judges.Judge` that asks an LLM which essay is better.

    Parameters
    ----------
    config : LLMConfig
        Server, model, sampling, limits and prices (key from ``CJ_LLM_API_KEY``).
    template : PromptTemplate, optional
        Prompt template; the packaged ENG5 default when omitted.
    grade_scale : str or GradeScale
        Scale whose labels fill ``{grade_scale}``.
    judge_id : str, optional
        Recorded judge of each comparison; ``llm:<model>`` by default.
    costs : CostTracker, optional
        Running token and cost totals (a new tracker by default; read :attr:`costs`).
    seed : int, optional
        Seed of the backoff jitter.

    Notes
    -----
    Positions map as A → ``essay_a``, B → ``essay_b`` of the request. Every failure is a
    JudgeResult with an error code from :data:`cjlib.llm.contract.ERROR_CODES` and no winner.
    Close the judge (``close()``, ``await aclose()``, or use it as a context manager) to
    release HTTP connections.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        template: PromptTemplate | None = None,
        grade_scale: str | GradeScale = DEFAULT_GRADE_SCALE,
        judge_id: str | None = None,
        costs: CostTracker | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.template = template or load_prompt_template()
        self.grade_scale = get_grade_scale(grade_scale)
        self.judge_id = (judge_id or f"llm:{config.model}")[:100]
        self.costs = costs or CostTracker()
        self.price = config.price()
        self.retry = config.retry_policy()
        self.limiter = RequestRateLimiter(config.requests_per_minute)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        install_log_redaction(config.api_key)

    def __repr__(self) -> str:
        return (
            f"LLMJudge(model={self.config.model!r}, base_url={self.config.base_url!r}, "
            f"template={self.template.sha256[:12]}, judge_id={self.judge_id!r})"
        )

    # -- prompt --------------------------------------------------------------------------

    def messages(self, request: PairRequest) -> list[dict[str, str]]:
        """The chat messages sent for ``request`` (texts and instructions only, no ids)."""
        return self.template.render(
            instructions=request.prompt,
            grade_scale=", ".join(self.grade_scale.all_labels),
            essay_a=request.essay_a_text,
            essay_b=request.essay_b_text,
        )

    def _create_params(self, request: PairRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.config.model,
            "messages": self.messages(request),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.use_response_format:
            params["response_format"] = contract.RESPONSE_FORMAT
        return params

    # -- transport -----------------------------------------------------------------------

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = openai.AsyncOpenAI(
                    base_url=self.config.base_url,
                    api_key=self.config.api_key.reveal() or _NO_KEY,
                    max_retries=0,
                    timeout=self.config.timeout_s,
                )
                self._clients[loop] = client
                # The client may have created its loggers just now.
                install_log_redaction(self.config.api_key)
        return client

    def _mask(self, text: str | None) -> str | None:
        return mask_secrets(text, [self.config.api_key])

    async def _attempt(
        self, params: dict[str, Any], seen: _Attempts
    ) -> tuple[bool, bool, float | None]:
        """One HTTP attempt; returns ``(answered, retryable, retry_after)``."""
        await self.limiter.acquire()
        start = time.monotonic()
        try:
            raw = await self._client().chat.completions.with_raw_response.create(**params)
        except openai.APITimeoutError:
            seen.errors.append("timeout")
            seen.status, seen.body = None, None
            seen.error_code = contract.TIMEOUT
            seen.error_detail = f"no answer within {self.config.timeout_s:g} s"
            return False, True, None
        except openai.APIConnectionError as err:
            seen.errors.append("connection_error")
            seen.status, seen.body = None, None
            seen.error_code = contract.CONNECTION_ERROR
            seen.error_detail = self._mask(f"cannot reach {self.config.base_url}: {err}")
            return False, True, None
        except openai.APIStatusError as err:
            status = err.status_code
            seen.errors.append(f"http_{status}")
            seen.status, seen.body = status, self._mask(err.response.text[:MAX_RAW_CHARS])
            seen.error_code, seen.error_detail = self._status_error(status, seen.body)
            return False, is_retryable_status(status), parse_retry_after(err.response.headers)
        finally:
            seen.latency_s = time.monotonic() - start
        seen.status = raw.status_code
        # Only the key is masked here (a proxy could echo headers); the answer stays verbatim.
        key, body = self.config.api_key.reveal(), raw.http_response.text
        seen.body = body.replace(key, MASK) if key else body
        return True, False, None

    def _status_error(self, status: int, body: str | None) -> tuple[str, str]:
        detail = f"HTTP {status}: {(body or '').strip()[:300]}"
        if status == 429:
            return contract.RATE_LIMITED, detail
        if 500 <= status <= 599:
            return contract.SERVER_ERROR, detail
        if status in (401, 403):
            return contract.AUTH_ERROR, f"{detail} (is CJ_LLM_API_KEY set and valid?)"
        return contract.HTTP_ERROR, detail

    async def _send(self, params: dict[str, Any]) -> tuple[_Attempts, bool]:
        seen = _Attempts()
        for attempt in range(self.retry.max_attempts):
            answered, retryable, retry_after = await self._attempt(params, seen)
            if answered:
                return seen, True
            if not retryable or attempt + 1 == self.retry.max_attempts:
                return seen, False
            with self._lock:
                delay = self.retry.delay(attempt, retry_after, self._rng)
            if seen.status == 429 and retry_after is not None:
                self.limiter.pause(delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    # -- answer --------------------------------------------------------------------------

    def _read_answer(
        self, body: str
    ) -> tuple[dict[str, Any], contract.Answer | None, str | None, str | None]:
        """``(fields for the JudgeCall, answer, error_code, error_detail)`` of a 2xx body."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("the body is not a JSON object")
            content, refusal, finish_reason = _message(data)
        except ValueError as err:
            detail = f"not a chat completion: {err}"
            return {}, None, contract.INVALID_RESPONSE, detail
        prompt_tokens, completion_tokens = _usage(data)
        cost = None
        if self.price is not None and prompt_tokens is not None and completion_tokens is not None:
            cost = self.price.cost(prompt_tokens, completion_tokens)
        self.costs.add(prompt_tokens, completion_tokens, cost)
        fields = {
            "model_reported": data.get("model") if isinstance(data.get("model"), str) else None,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "finish_reason": finish_reason,
            "response_content": content if content is not None else refusal,
            "cost_usd": cost,
        }
        try:
            answer = contract.parse_answer(content, finish_reason=finish_reason, refusal=refusal)
        except contract.AnswerError as err:
            return fields, None, err.code, err.detail
        return fields, answer, None, None

    async def ajudge(self, request: PairRequest) -> JudgeResult:
        """Decide ``request`` by asking the model; never raises for server or answer faults.

        Returns
        -------
        JudgeResult
            With ``winner`` and the model's 1–5 ``confidence`` (as a float), or with an
            ``error_code``; ``call`` holds the :class:`JudgeCall` either way.
        """
        started, t0 = _now(), time.monotonic()
        seen, answered = await self._send(self._create_params(request))
        fields: dict[str, Any] = {}
        answer = None
        if answered:
            fields, answer, seen.error_code, seen.error_detail = self._read_answer(seen.body or "")
        call = JudgeCall(
            request_correlation_id=request.request_correlation_id,
            essay_a_id=request.essay_a_id,
            essay_b_id=request.essay_b_id,
            judge_id=self.judge_id,
            template_sha256=self.template.sha256,
            model_requested=self.config.model,
            started_at=started,
            completed_at=_now(),
            total_s=time.monotonic() - t0,
            attempts=len(seen.errors) + (1 if answered else 0),
            request_params=self.config.request_params(),
            latency_s=seen.latency_s,
            attempt_errors=tuple(seen.errors),
            http_status=seen.status,
            raw_response=None if seen.body is None else seen.body[:MAX_RAW_CHARS],
            winner=answer.winner_essay if answer else None,
            confidence=answer.confidence if answer else None,
            justification=answer.justification if answer else None,
            error_code=None if answer else seen.error_code,
            error_detail=None if answer else self._mask(seen.error_detail),
            **fields,
        )
        return call.to_result()

    async def ajudge_many(
        self, requests: Sequence[PairRequest], concurrency: int | None = None
    ) -> list[JudgeResult]:
        """Decide ``requests`` with at most ``concurrency`` in flight; results in input order."""
        limit = asyncio.Semaphore(concurrency or self.config.concurrency)

        async def one(request: PairRequest) -> JudgeResult:
            async with limit:
                return await self.ajudge(request)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    # -- synchronous form and lifetime ---------------------------------------------------

    def _loop_for_sync(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._sync_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"{self.judge_id}-loop", daemon=True
                )
                thread.start()
                self._sync_loop, self._sync_thread = loop, thread
            return self._sync_loop

    def judge(self, request: PairRequest) -> JudgeResult:
        """Synchronous :meth:`ajudge` (thread-safe; usable where a loop is already running)."""
        future = asyncio.run_coroutine_threadsafe(self.ajudge(request), self._loop_for_sync())
        return future.result()

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Close the private loop's client and stop its thread (clients of other loops: aclose)."""
        with self._lock:
            loop, thread = self._sync_loop, self._sync_thread
            self._sync_loop = self._sync_thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMJudge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()

"""The audit record of one LLM judge call: enough to explain, price and replay a decision.

A :class:`JudgeCall` rides on :attr:`cjlib.judges.JudgeResult.call`; the runner stores it in
``cj_judge_calls`` with :func:`cjlib.db.judge_calls.record_judge_calls`. It never holds the
API key (error texts are masked with :func:`cjlib.llm.redact.mask_secrets`), nor the essay
texts or the rendered prompt (they are in ``cj_content`` and the template file, whose hash
is stored).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cjlib.judges import JudgeResult


@dataclass(frozen=True)
class JudgeCall:
    """One chat-completion call, including every retry of it.

    Attributes
    ----------
    request_correlation_id : str
        The pair request it answers.
    essay_a_id, essay_b_id : str
        Essays in positions A and B as sent (never shown to the model).
    judge_id : str
        The judge that made the call.
    template_sha256 : str
        SHA-256 of the prompt template file.
    model_requested : str
        Model named in the request.
    model_reported : str or None
        ``model`` in the server's response (e.g. a dated snapshot), None without an answer.
    request_params : dict
        Sampling and protocol parameters sent (temperature, max_tokens, response_format
        type, timeout); no messages, no key.
    prompt_tokens, completion_tokens : int or None
        Usage reported by the server; None when it reported none.
    latency_s : float or None
        Duration of the last HTTP attempt.
    total_s : float
        Wall time of the whole call: rate-limit waits, retries and backoff included.
    attempts : int
        HTTP attempts made (1 = no retry).
    attempt_errors : tuple of str
        What each failed attempt got (``http_429``, ``http_500``, ``timeout`` …), in order.
    http_status : int or None
        Status of the last attempt (None after a timeout or connection failure).
    finish_reason : str or None
        ``choices[0].finish_reason``.
    response_content : str or None
        ``choices[0].message.content`` as received.
    raw_response : str or None
        The last HTTP response body as received (truncated at 64 KiB).
    winner : {'essay_a', 'essay_b'} or None
        The decision, None when the call failed.
    confidence : int or None
        The model's 1–5 confidence.
    justification : str or None
        The model's reason.
    error_code : str or None
        One of :data:`cjlib.llm.contract.ERROR_CODES` when the call failed.
    error_detail : str or None
        One line saying what went wrong (secrets masked).
    cost_usd : float or None
        Estimated cost; None when the model has no price or no usage was reported.
    started_at, completed_at : datetime
        UTC times of the call.
    """

    request_correlation_id: str
    essay_a_id: str
    essay_b_id: str
    judge_id: str
    template_sha256: str
    model_requested: str
    started_at: datetime
    completed_at: datetime
    total_s: float
    attempts: int
    request_params: dict[str, Any] = field(default_factory=dict)
    model_reported: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    attempt_errors: tuple[str, ...] = ()
    http_status: int | None = None
    finish_reason: str | None = None
    response_content: str | None = None
    raw_response: str | None = None
    winner: str | None = None
    confidence: int | None = None
    justification: str | None = None
    error_code: str | None = None
    error_detail: str | None = None
    cost_usd: float | None = None

    @property
    def retries(self) -> int:
        """Attempts beyond the first."""
        return max(0, self.attempts - 1)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-friendly apart from the two datetimes)."""
        data = asdict(self)
        data["attempt_errors"] = list(self.attempt_errors)
        return data

    def to_result(self) -> JudgeResult:
        """The :class:`~cjlib.judges.JudgeResult` this call stands for, carrying the call."""
        if self.winner is not None:
            return JudgeResult(
                self.request_correlation_id,
                winner=self.winner,
                confidence=float(self.confidence) if self.confidence is not None else None,
                justification=self.justification,
                call=self,
            )
        return JudgeResult(self.request_correlation_id, error_code=self.error_code, call=self)

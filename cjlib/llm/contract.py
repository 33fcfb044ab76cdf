"""The answer contract: what an LLM judge must answer, and the one parser that enforces it.

The model is asked for exactly one JSON object::

    {"winner": "A" | "B", "confidence": 1..5, "justification": "<non-empty text>"}

requested with ``response_format`` = :data:`RESPONSE_FORMAT` (a strict JSON schema). Servers
that ignore ``response_format`` may answer the object as the whole message content or as the
whole content inside one fenced block (```json … ``` or ``` … ```); both are accepted.
Anything else fails with an :class:`AnswerError` carrying an error code from
:data:`ERROR_CODES`; nothing is ever guessed (an unknown winner is not "A", a missing confidence
is not 3).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: A model answer that breaks the contract (unparseable, wrong fields or values).
INVALID_RESPONSE = "invalid_response"
#: The model refused (``message.refusal`` set or ``finish_reason == "content_filter"``).
REFUSAL = "refusal"
#: 429 after every retry.
RATE_LIMITED = "rate_limited"
#: 5xx after every retry.
SERVER_ERROR = "server_error"
#: The server did not answer within the timeout, on every attempt.
TIMEOUT = "timeout"
#: The server could not be reached, on every attempt.
CONNECTION_ERROR = "connection_error"
#: 401/403: the key is missing or wrong (the run should stop, not fail every pair).
AUTH_ERROR = "auth_error"
#: Any other HTTP status (400, 404 model not found, 422 …), or a body that is not JSON.
HTTP_ERROR = "http_error"
#: Replay found no stored call for the request.
REPLAY_MISSING = "replay_missing"

#: Every error code an LLM or replay judge puts on a failed :class:`~cjlib.judges.JudgeResult`.
ERROR_CODES = (
    INVALID_RESPONSE,
    REFUSAL,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    CONNECTION_ERROR,
    AUTH_ERROR,
    HTTP_ERROR,
    REPLAY_MISSING,
)
#: Error codes that say the answer itself broke the contract (the request was delivered).
CONTRACT_ERROR_CODES = frozenset({INVALID_RESPONSE, REFUSAL})

CONFIDENCE_MIN, CONFIDENCE_MAX = 1, 5
_FIELDS = frozenset({"winner", "confidence", "justification"})
_POSITIONS = {"A": "essay_a", "B": "essay_b"}

#: JSON schema of the answer (OpenAI structured outputs, strict mode).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B"]},
        "confidence": {"type": "integer", "minimum": CONFIDENCE_MIN, "maximum": CONFIDENCE_MAX},
        "justification": {"type": "string", "minLength": 1},
    },
    "required": ["winner", "confidence", "justification"],
    "additionalProperties": False,
}
#: The ``response_format`` request parameter.
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "cj_judgement", "strict": True, "schema": ANSWER_SCHEMA},
}

_FENCE = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)


class AnswerError(ValueError):
    """An answer broke the contract; ``code`` is ``invalid_response`` or ``refusal``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    """A valid answer.

    Attributes
    ----------
    winner : {'A', 'B'}
        The position the model chose.
    confidence : int
        1 (unsure) to 5 (certain), as the model gave it.
    justification : str
        The model's reason.
    """

    winner: str
    confidence: int
    justification: str

    @property
    def winner_essay(self) -> str:
        """``'essay_a'`` for A, ``'essay_b'`` for B (the positions of the request)."""
        return _POSITIONS[self.winner]


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise AnswerError(INVALID_RESPONSE, f"the object repeats {', '.join(duplicated)}")
    return dict(pairs)


def _json_object(content: str) -> dict[str, Any]:
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group("body").strip()
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as err:
        raise AnswerError(INVALID_RESPONSE, f"content is not a JSON object ({err.msg})") from None
    if not isinstance(value, dict):
        raise AnswerError(INVALID_RESPONSE, f"content is JSON {type(value).__name__}, not object")
    return value


def _check_fields(obj: dict[str, Any]) -> Answer:
    missing = sorted(_FIELDS - obj.keys())
    if missing:
        raise AnswerError(INVALID_RESPONSE, f"missing field(s): {', '.join(missing)}")
    extra = sorted(obj.keys() - _FIELDS)
    if extra:
        raise AnswerError(INVALID_RESPONSE, f"unexpected field(s): {', '.join(extra)}")
    winner, confidence, justification = obj["winner"], obj["confidence"], obj["justification"]
    if winner not in _POSITIONS or not isinstance(winner, str):
        raise AnswerError(INVALID_RESPONSE, f"winner must be 'A' or 'B', not {winner!r}")
    # bool is an int in Python and 4.0 is not an integer answer: both are refused.
    if isinstance(confidence, bool) or not isinstance(confidence, int):
        raise AnswerError(INVALID_RESPONSE, f"confidence must be an integer, not {confidence!r}")
    if not CONFIDENCE_MIN <= confidence <= CONFIDENCE_MAX:
        raise AnswerError(
            INVALID_RESPONSE,
            f"confidence must be {CONFIDENCE_MIN}–{CONFIDENCE_MAX}, not {confidence}",
        )
    if not isinstance(justification, str) or not justification.strip():
        raise AnswerError(INVALID_RESPONSE, "justification must be non-empty text")
    return Answer(winner, confidence, justification.strip())


def parse_answer(
    content: str | None, *, finish_reason: str | None = None, refusal: str | None = None
) -> Answer:
    """Check one chat-completion message against the answer contract.

    Parameters
    ----------
    content : str or None
        ``choices[0].message.content``.
    finish_reason : str, optional
        ``choices[0].finish_reason``; ``content_filter`` is a refusal, ``length`` is named in
        the error when the truncated content does not parse.
    refusal : str, optional
        ``choices[0].message.refusal`` (structured outputs' refusal field).

    Returns
    -------
    Answer

    Raises
    ------
    AnswerError
        ``refusal`` for a refusal; ``invalid_response`` for anything else that is not exactly
        the contract's object.
    """
    if refusal:
        raise AnswerError(REFUSAL, f"the model refused: {refusal[:200]}")
    if finish_reason == "content_filter":
        raise AnswerError(REFUSAL, "the answer was withheld by a content filter")
    if content is None or not content.strip():
        raise AnswerError(INVALID_RESPONSE, "the message has no content")
    try:
        return _check_fields(_json_object(content))
    except AnswerError as err:
        if finish_reason == "length":
            raise AnswerError(err.code, f"{err.detail} (truncated: finish_reason=length)") from None
        raise

"""Settings of the LLM judge: server, model, sampling, limits and prices.

Read with :meth:`LLMConfig.from_env`: ``base_url`` and ``model`` from arguments (the CLI's
``--llm-base-url``/``--llm-model``) or else ``CJ_LLM_BASE_URL``/``CJ_LLM_MODEL``; the API key
only ever from ``CJ_LLM_API_KEY`` (see :mod:`cjlib.config`), held in a
:class:`~cjlib.llm.redact.Secret` that no repr, log or record shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cjlib import config
from cjlib.errors import UsageError
from cjlib.llm.costs import ModelPrice, load_price_table, price_for
from cjlib.llm.redact import Secret
from cjlib.llm.retry import RetryPolicy


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = "≥ 0" if allow_zero else "> 0"
        raise UsageError(f"LLM setting {name} must be a number {bound}, not {value!r}")


@dataclass(frozen=True)
class LLMConfig:
    """Everything the LLM judge needs except the key, which comes from the environment.

    Parameters
    ----------
    base_url : str
        OpenAI-compatible API root, e.g. ``https://api.openai.com/v1``.
    model : str
        Model to request.
    temperature : float
        Sampling temperature (0 for the most repeatable answers).
    max_tokens : int
        Completion token limit per answer.
    timeout_s : float
        Per-attempt HTTP timeout.
    max_retries : int
        Retries after the first attempt (so ``max_retries + 1`` attempts at most).
    backoff_base_s, backoff_max_s, max_retry_after_s : float
        See :class:`~cjlib.llm.retry.RetryPolicy`.
    requests_per_minute : float or None
        Request starts per minute across the judge (None: no limit).
    concurrency : int
        Requests in flight that :meth:`LLMJudge.ajudge_many` (and the runner) allow.
    prompt_price_per_1k, completion_price_per_1k : float or None
        USD per 1,000 tokens, overriding the price table (give both or neither).
    price_file : str or None
        A price table replacing the packaged estimates.
    use_response_format : bool
        Send ``response_format`` (strict JSON schema); turn off for servers that reject it.

    Attributes
    ----------
    api_key : Secret
        ``CJ_LLM_API_KEY`` at construction ('' when unset); not an argument on purpose.
    """

    base_url: str
    model: str
    temperature: float = 0.0
    max_tokens: int = 300
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 120.0
    requests_per_minute: float | None = None
    concurrency: int = 8
    prompt_price_per_1k: float | None = None
    completion_price_per_1k: float | None = None
    price_file: str | None = None
    use_response_format: bool = True
    api_key: Secret = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_key", Secret(config.llm_api_key()))
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(
                f"LLM base URL {self.base_url!r} must start with http:// or https://, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        if not self.model.strip():
            raise UsageError("the LLM model name is empty; set CJ_LLM_MODEL or --llm-model")
        _positive("temperature", self.temperature, allow_zero=True)
        _positive("timeout_s", self.timeout_s)
        for name in ("backoff_base_s", "backoff_max_s", "max_retry_after_s"):
            _positive(name, getattr(self, name), allow_zero=True)
        if self.requests_per_minute is not None:
            _positive("requests_per_minute", self.requests_per_minute)
        for name in ("max_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"LLM setting {name} must be an integer ≥ 1, not {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UsageError(
                f"LLM setting max_retries must be an integer ≥ 0, not {self.max_retries!r}"
            )
        if (self.prompt_price_per_1k is None) != (self.completion_price_per_1k is None):
            raise UsageError(
                "give both --llm-price-prompt and --llm-price-completion (USD per 1k tokens), "
                "or neither"
            )

    @classmethod
    def from_env(
        cls, *, base_url: str | None = None, model: str | None = None, **settings: Any
    ) -> LLMConfig:
        """Settings from arguments, falling back to ``CJ_LLM_BASE_URL`` and ``CJ_LLM_MODEL``.

        Raises
        ------
        UsageError
            No base URL or model anywhere, or a bad setting (unknown ones included).
        """
        base_url = base_url or config.llm_base_url()
        model = model or config.llm_model()
        if not base_url:
            raise UsageError("no LLM server: set CJ_LLM_BASE_URL or pass --llm-base-url")
        if not model:
            raise UsageError("no LLM model: set CJ_LLM_MODEL or pass --llm-model")
        try:
            return cls(base_url=base_url, model=model, **settings)
        except TypeError as err:
            raise UsageError(f"{err}; see cjlib.llm.LLMConfig for the settings") from None

    def retry_policy(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(
            max_attempts=self.max_retries + 1,
            base_s=self.backoff_base_s,
            max_backoff_s=self.backoff_max_s,
            max_retry_after_s=self.max_retry_after_s,
        )

    def price(self) -> ModelPrice | None:
        """Explicit prices, else the price table's entry for :attr:`model` (None if absent)."""
        if self.prompt_price_per_1k is not None and self.completion_price_per_1k is not None:
            return ModelPrice(self.prompt_price_per_1k, self.completion_price_per_1k)
        return price_for(self.model, load_price_table(self.price_file))

    def request_params(self) -> dict[str, Any]:
        """The parameters stored with each call (what shaped the answer, no secrets)."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": "json_schema" if self.use_response_format else None,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_retries + 1,
        }

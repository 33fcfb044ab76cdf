"""Token prices and a running cost estimate that can refuse more spending.

Prices are US dollars per 1,000 prompt and completion tokens, from a small packaged table
(``cjlib/llm/prices.toml``, dated estimates) that a user overrides by a file or by explicit
prices. The estimated cost of a call is
``prompt_tokens / 1000 · prompt_per_1k + completion_tokens / 1000 · completion_per_1k``.
"""

from __future__ import annotations

import math
import threading
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cjlib.errors import UsageError

if TYPE_CHECKING:
    from cjlib.llm.audit import JudgeCall

PRICE_FILE = "prices.toml"


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1,000 prompt and completion tokens of one model."""

    prompt_per_1k: float
    completion_per_1k: float

    def __post_init__(self) -> None:
        for name in ("prompt_per_1k", "completion_per_1k"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise UsageError(f"price {name} must be a number ≥ 0, not {value!r}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Estimated cost in USD of one call's token usage."""
        return (
            prompt_tokens / 1000.0 * self.prompt_per_1k
            + completion_tokens / 1000.0 * self.completion_per_1k
        )


def _parse_price_table(data: bytes, source: str) -> dict[str, ModelPrice]:
    try:
        table = tomllib.loads(data.decode("utf-8"))
        models = table["models"]
        return {
            str(name): ModelPrice(float(p["prompt_per_1k"]), float(p["completion_per_1k"]))
            for name, p in models.items()
        }
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise UsageError(
            f"price table {source} is not valid ({err}); each model needs "
            '[models."NAME"] with prompt_per_1k and completion_per_1k'
        ) from None


def load_price_table(path: str | Path | None = None) -> dict[str, ModelPrice]:
    """Model → :class:`ModelPrice` from ``path``, or the packaged estimates when None.

    Raises
    ------
    UsageError
        Missing or malformed file.
    """
    if path is None:
        data = resources.files("cjlib.llm").joinpath(PRICE_FILE).read_bytes()
        return _parse_price_table(data, f"package:{PRICE_FILE}")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"price table {file} does not exist")
    return _parse_price_table(file.read_bytes(), str(file))


def price_for(model: str, table: dict[str, ModelPrice]) -> ModelPrice | None:
    """The price of ``model``: exact name, else the longest table name it starts with."""
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name)]
    return table[max(prefixes, key=len)] if prefixes else None


@dataclass(frozen=True)
class CostTotals:
    """Sums over recorded calls; ``cost_usd`` is None when some call had no price."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class CostTracker:
    """Thread-safe running totals of tokens and estimated cost.

    Counts calls that got an answer (failed transport attempts cost nothing). The runner asks
    :meth:`would_exceed` before submitting more pairs; the estimate of the next calls is the
    mean cost per call so far (0 before the first call, so the first call is always allowed).
    A resumed batch seeds the tracker with :meth:`add_call` over its stored calls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._priced_calls = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._cost = 0.0
        self._unpriced = 0

    def add(
        self, prompt_tokens: int | None, completion_tokens: int | None, cost_usd: float | None
    ) -> None:
        """Record one call (tokens None when the server reported no usage)."""
        with self._lock:
            self._calls += 1
            self._prompt_tokens += prompt_tokens or 0
            self._completion_tokens += completion_tokens or 0
            if cost_usd is None:
                self._unpriced += 1
            else:
                self._priced_calls += 1
                self._cost += cost_usd

    def add_call(self, call: JudgeCall) -> None:
        """Record a stored call that got an answer (2xx), e.g. to resume a batch's totals."""
        if call.http_status is not None and 200 <= call.http_status <= 299:
            self.add(call.prompt_tokens, call.completion_tokens, call.cost_usd)

    def totals(self) -> CostTotals:
        """Current totals."""
        with self._lock:
            return CostTotals(
                calls=self._calls,
                prompt_tokens=self._prompt_tokens,
                completion_tokens=self._completion_tokens,
                cost_usd=None if self._unpriced else self._cost,
            )

    def would_exceed(self, max_cost_usd: float, *, more_calls: int = 1) -> bool:
        """Whether ``more_calls`` further calls would take the estimate past ``max_cost_usd``.

        Raises
        ------
        UsageError
            Some call had no price, so no estimate exists (give prices to use a cost cap).
        """
        with self._lock:
            if self._unpriced:
                raise UsageError(
                    "cannot enforce --max-cost-usd: the model has no price; pass "
                    "--llm-price-prompt and --llm-price-completion"
                )
            mean = self._cost / self._priced_calls if self._priced_calls else 0.0
            return self._cost + mean * more_calls > max_cost_usd

"""Options of the LLM and replay judges, shared by ``cj batch execute`` and ``cj pipeline``.

Each option is an ``Annotated`` type so a command declares it in one line; :func:`llm_settings`
turns the values into the ``llm`` mapping of :func:`cjlib.workflow.execute_batch`. The API key
has no option on purpose: it is read from ``CJ_LLM_API_KEY`` only, so it never lands in shell
history, process lists or recorded command lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_PANEL = "LLM judge (--judge llm / replay)"

LLMBaseUrl = Annotated[
    str | None,
    typer.Option(
        "--llm-base-url",
        help="OpenAI-compatible API root (default CJ_LLM_BASE_URL), e.g. http://127.0.0.1:8000/v1.",
        rich_help_panel=_PANEL,
    ),
]
LLMModel = Annotated[
    str | None,
    typer.Option("--llm-model", help="Model name (default CJ_LLM_MODEL).", rich_help_panel=_PANEL),
]
PromptTemplateFile = Annotated[
    Path | None,
    typer.Option(
        "--prompt-template",
        help="Prompt template file (default: the packaged ENG5 template).",
        rich_help_panel=_PANEL,
    ),
]
Concurrency = Annotated[
    int | None,
    typer.Option(
        "--concurrency", min=1, help="Judge requests in flight at once.", rich_help_panel=_PANEL
    ),
]
RequestsPerMinute = Annotated[
    float | None,
    typer.Option(
        "--requests-per-minute",
        help="Cap on LLM request starts per minute.",
        rich_help_panel=_PANEL,
    ),
]
MaxCostUsd = Annotated[
    float | None,
    typer.Option(
        "--max-cost-usd",
        help="Stop submitting pairs when the estimated cost would pass this (USD).",
        rich_help_panel=_PANEL,
    ),
]
BothOrders = Annotated[
    bool,
    typer.Option(
        "--both-orders", help="Send each pair as AB and BA (position bias).", rich_help_panel=_PANEL
    ),
]
ReplayFrom = Annotated[
    int | None,
    typer.Option(
        "--replay-from",
        metavar="CJ_BATCH_ID",
        help="With --judge replay: the batch whose stored LLM answers to reuse.",
        rich_help_panel=_PANEL,
    ),
]
PricePrompt = Annotated[
    float | None,
    typer.Option("--llm-price-prompt", help="USD per 1k prompt tokens.", rich_help_panel=_PANEL),
]
PriceCompletion = Annotated[
    float | None,
    typer.Option(
        "--llm-price-completion", help="USD per 1k completion tokens.", rich_help_panel=_PANEL
    ),
]
Temperature = Annotated[
    float | None,
    typer.Option(
        "--llm-temperature", help="Sampling temperature (default 0).", rich_help_panel=_PANEL
    ),
]


def llm_settings(
    *,
    base_url: str | None = None,
    model: str | None = None,
    prompt_template: Path | None = None,
    concurrency: int | None = None,
    requests_per_minute: float | None = None,
    price_prompt: float | None = None,
    price_completion: float | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """The ``llm`` mapping of :func:`~cjlib.workflow.execute_batch` from option values.

    Options left unset are left out, so the environment and the defaults of
    :class:`~cjlib.llm.settings.LLMConfig` apply.
    """
    values = {
        "base_url": base_url,
        "model": model,
        "prompt_template": None if prompt_template is None else str(prompt_template),
        "concurrency": concurrency,
        "requests_per_minute": requests_per_minute,
        "prompt_price_per_1k": price_prompt,
        "completion_price_per_1k": price_completion,
        "temperature": temperature,
    }
    return {key: value for key, value in values.items() if value is not None}

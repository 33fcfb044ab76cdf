"""LLM judges over OpenAI-compatible chat-completions servers, and their audit trail.

Modules, one idea each: :mod:`~cjlib.llm.settings` (``LLMConfig``), :mod:`~cjlib.llm.prompts`
(template files), :mod:`~cjlib.llm.contract` (the answer contract and error codes),
:mod:`~cjlib.llm.retry` and :mod:`~cjlib.llm.ratelimit` (transport policy),
:mod:`~cjlib.llm.judge` (``LLMJudge``), :mod:`~cjlib.llm.audit` (``JudgeCall``),
:mod:`~cjlib.llm.costs` (prices, ``CostTracker``), :mod:`~cjlib.llm.replay` (``ReplayJudge``),
:mod:`~cjlib.llm.orders` (both orders, position bias) and :mod:`~cjlib.llm.redact` (secrets).

Names are imported lazily so that reading audit records (``cjlib.db.judge_calls``) does not
import the ``openai`` client.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cjlib.defaults import DEFAULT_GRADE_SCALE

if TYPE_CHECKING:
    from cjlib.grades import GradeScale
    from cjlib.llm.judge import LLMJudge

_EXPORTS = {
    "LLMConfig": "cjlib.llm.settings",
    "LLMJudge": "cjlib.llm.judge",
    "JudgeCall": "cjlib.llm.audit",
    "CostTracker": "cjlib.llm.costs",
    "ModelPrice": "cjlib.llm.costs",
    "load_price_table": "cjlib.llm.costs",
    "PromptTemplate": "cjlib.llm.prompts",
    "load_prompt_template": "cjlib.llm.prompts",
    "parse_answer": "cjlib.llm.contract",
    "ERROR_CODES": "cjlib.llm.contract",
    "ReplayJudge": "cjlib.llm.replay",
    "both_orders": "cjlib.llm.orders",
    "order_agreement": "cjlib.llm.orders",
    "mask_secrets": "cjlib.llm.redact",
}
__all__ = [*_EXPORTS, "make_llm_judge"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cjlib.llm' has no attribute {name!r}")


def make_llm_judge(
    *,
    base_url: str | None = None,
    model: str | None = None,
    prompt_template: str | Path | None = None,
    grade_scale: str | GradeScale = DEFAULT_GRADE_SCALE,
    judge_id: str | None = None,
    seed: int | None = None,
    **settings: Any,
) -> LLMJudge:
    """Build an :class:`~cjlib.llm.judge.LLMJudge` from CLI-style options and the environment.

    Parameters
    ----------
    base_url, model : str, optional
        ``--llm-base-url``/``--llm-model``; default ``CJ_LLM_BASE_URL``/``CJ_LLM_MODEL``.
    prompt_template : path, optional
        ``--prompt-template FILE``; the packaged ENG5 template when None.
    grade_scale : str or GradeScale
        Scale shown to the model.
    judge_id : str, optional
        Recorded judge id (``llm:<model>`` by default).
    seed : int, optional
        Seed of the retry jitter.
    **settings
        Further :class:`~cjlib.llm.settings.LLMConfig` fields (temperature, concurrency,
        requests_per_minute, prompt_price_per_1k, completion_price_per_1k, …).

    Raises
    ------
    UsageError
        Missing server or model, a bad setting, or an invalid template.
    """
    from cjlib.llm.judge import LLMJudge
    from cjlib.llm.prompts import load_prompt_template
    from cjlib.llm.settings import LLMConfig

    config = LLMConfig.from_env(base_url=base_url, model=model, **settings)
    return LLMJudge(
        config,
        template=load_prompt_template(prompt_template),
        grade_scale=grade_scale,
        judge_id=judge_id,
        seed=seed,
    )

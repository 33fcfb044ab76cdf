"""Configuration read in one place: environment variables and their defaults.

The test suite's own settings (``CJ_TEST_DATABASE_URL``, ``CJ_REQUIRE_POSTGRES``) are read
in ``tests/conftest.py``, not here: the library never needs them.

Environment variables
---------------------
CJ_DATABASE_URL
    SQLAlchemy URL of the CJ database (``--database-url`` wins over it). Default: the
    embedded SQLite file ``data/cj.sqlite3`` under the project root (the current directory).
CJ_ENVIRONMENT
    Name of the deployment environment; unset means ``development``. Destructive commands
    (``cj db reset``, ``cj batch cleanup``) run only when it is one of ``development``,
    ``dev``, ``test``, ``testing``, ``local`` (case and surrounding spaces ignored); any other
    value, including ``staging``, ``production``, misspellings and values with non-ASCII or
    invisible characters, refuses them.
CJ_NOTEBOOK_PARAMETERS
    A JSON object whose values fill notebook parameters left at None when a notebook runs
    outside ``cj pipeline`` (JupyterLab, nbval), e.g. ``{"cj_batch_id": 3, "run_dir": "…"}``.
CJ_LLM_BASE_URL
    Base URL of the OpenAI-compatible chat-completions API the LLM judge calls
    (``--llm-base-url`` wins), e.g. ``https://api.openai.com/v1`` or a local
    ``http://127.0.0.1:8000/v1`` (vLLM, Ollama, llama.cpp).
CJ_LLM_MODEL
    Model name the LLM judge requests (``--llm-model`` wins).
CJ_LLM_API_KEY
    API key of the LLM server. Read only from the environment (no option, never stored or
    logged); unset for local servers that need none.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

DEFAULT_SQLITE_PATH = Path("data") / "cj.sqlite3"
DEFAULT_ENVIRONMENT = "development"
#: The only environments in which destructive commands run (an allow list: anything else,
#: misspelt or unknown, is refused).
DISPOSABLE_ENVIRONMENTS = frozenset({"development", "dev", "test", "testing", "local"})


def default_database_url() -> str:
    """URL of the embedded SQLite database ``data/cj.sqlite3`` in the current directory."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH.resolve()}"


def resolve_database_url(url: str | None = None) -> str:
    """The database URL to use: ``url`` if given, else ``CJ_DATABASE_URL``, else embedded SQLite."""
    if url:
        return url
    env = os.environ.get("CJ_DATABASE_URL", "").strip()
    return env or default_database_url()


def normalise_environment(value: str) -> str:
    """``value`` in NFKC form, stripped and lower-cased (``" Dev "`` → ``"dev"``)."""
    return unicodedata.normalize("NFKC", value).strip().lower()


def environment() -> str:
    """The deployment environment name from ``CJ_ENVIRONMENT`` (normalised).

    Unset or blank means ``development``. The value is returned as written after
    :func:`normalise_environment`; whether it allows destructive commands is decided by
    :func:`is_disposable_environment`.
    """
    raw = os.environ.get("CJ_ENVIRONMENT")
    if raw is None or not raw.strip():
        return DEFAULT_ENVIRONMENT
    return normalise_environment(raw)


def is_disposable_environment() -> bool:
    """Whether ``CJ_ENVIRONMENT`` explicitly names a development or test environment.

    True only for ``development``, ``dev``, ``test``, ``testing`` and ``local`` (and for an
    unset variable, which defaults to ``development``). A raw value holding any character
    outside printable ASCII (a fullwidth ``ｐｒｏｄ``, a zero-width space) is refused even if it
    would normalise to an allowed name: it was not typed as one.
    """
    raw = os.environ.get("CJ_ENVIRONMENT")
    if raw is None or not raw.strip():
        return True
    # Checked before stripping: str.strip() would silently drop a no-break space.
    if not all(" " <= ch <= "~" or ch in "\t\r\n" for ch in raw):
        return False
    return normalise_environment(raw) in DISPOSABLE_ENVIRONMENTS


def notebook_parameters_json() -> str:
    """The raw ``CJ_NOTEBOOK_PARAMETERS`` value ('' when unset); parsed by cjlib.pipeline."""
    return os.environ.get("CJ_NOTEBOOK_PARAMETERS", "").strip()


def llm_base_url() -> str:
    """``CJ_LLM_BASE_URL`` ('' when unset)."""
    return os.environ.get("CJ_LLM_BASE_URL", "").strip()


def llm_model() -> str:
    """``CJ_LLM_MODEL`` ('' when unset)."""
    return os.environ.get("CJ_LLM_MODEL", "").strip()


def llm_api_key() -> str:
    """``CJ_LLM_API_KEY`` ('' when unset); the only place the LLM judge's key comes from."""
    return os.environ.get("CJ_LLM_API_KEY", "").strip()

"""Configuration read in one place: environment variables and their defaults.

Environment variables
---------------------
CJ_DATABASE_URL
    SQLAlchemy URL of the CJ database (``--database-url`` wins over it). Default: the
    embedded SQLite file ``data/cj.sqlite3`` under the project root (the current directory).
CJ_ENVIRONMENT
    ``development`` (default), ``test``, ``staging``, ``production``/``prod``. Destructive
    commands refuse to run in ``production``, ``prod`` and ``staging``.
CJ_TEST_DATABASE_URL
    PostgreSQL server the tests create throw-away databases on
    (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).
CJ_REQUIRE_POSTGRES
    ``1`` makes PostgreSQL tests fail instead of skip when the server cannot be reached (CI).
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
from pathlib import Path

DEFAULT_SQLITE_PATH = Path("data") / "cj.sqlite3"
DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PROTECTED_ENVIRONMENTS = frozenset({"production", "prod", "staging"})


def default_database_url() -> str:
    """URL of the embedded SQLite database ``data/cj.sqlite3`` in the current directory."""
    return f"sqlite:///{DEFAULT_SQLITE_PATH.resolve()}"


def resolve_database_url(url: str | None = None) -> str:
    """The database URL to use: ``url`` if given, else ``CJ_DATABASE_URL``, else embedded SQLite."""
    if url:
        return url
    env = os.environ.get("CJ_DATABASE_URL", "").strip()
    return env or default_database_url()


def environment() -> str:
    """The deployment environment name from ``CJ_ENVIRONMENT`` (lower-cased)."""
    return os.environ.get("CJ_ENVIRONMENT", "development").strip().lower() or "development"


def test_database_url() -> str:
    """PostgreSQL server URL the test-suite uses to create throw-away databases."""
    return os.environ.get("CJ_TEST_DATABASE_URL", "").strip() or DEFAULT_TEST_DATABASE_URL


def require_postgres() -> bool:
    """Whether PostgreSQL tests must run (``CJ_REQUIRE_POSTGRES=1``) instead of skipping."""
    return os.environ.get("CJ_REQUIRE_POSTGRES", "").strip() in {"1", "true", "yes"}


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

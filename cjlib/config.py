"""Configuration read in one place: environment variables and their defaults.

The test suite's own settings (``CJ_TEST_DATABASE_URL``, ``CJ_REQUIRE_POSTGRES``) are read
in ``tests/conftest.py``, not here: the library never needs them.

Environment variables
---------------------
CJ_DATABASE_URL
    SQLAlchemy URL of the CJ database (``--database-url`` wins over it). Default: the
    embedded SQLite file ``data/cj.sqlite3`` under the project root (the current directory).
CJ_ENVIRONMENT
    ``development`` (default), ``test``, ``staging``, ``production``/``prod``. Destructive
    commands refuse to run in ``production``, ``prod`` and ``staging``.
CJ_NOTEBOOK_PARAMETERS
    A JSON object whose values fill notebook parameters left at None when a notebook runs
    outside ``cj pipeline`` (JupyterLab, nbval), e.g. ``{"cj_batch_id": 3, "run_dir": "…"}``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SQLITE_PATH = Path("data") / "cj.sqlite3"
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


def notebook_parameters_json() -> str:
    """The raw ``CJ_NOTEBOOK_PARAMETERS`` value ('' when unset); parsed by cjlib.pipeline."""
    return os.environ.get("CJ_NOTEBOOK_PARAMETERS", "").strip()

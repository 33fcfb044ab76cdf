"""Small output texts of the hardening: health thresholds in seconds, masked notebook URLs."""

from __future__ import annotations

import pytest

from cjlib.diagnostics import _duration, _over
from cjlib.notebook import fill_parameters, unmask_database_url


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1 s"), (0.5, "0.5 s"), (45, "45 s"), (60, "1 min"), (90, "1 min 30 s"),
     (1800, "30 min"), (3600, "1 h"), (5400, "1 h 30 min"), (3661, "1 h 1 min 1 s")],
)  # fmt: skip
def test_durations_are_never_rounded_to_a_coarser_unit(seconds, text):
    assert _duration(seconds) == text


def test_health_detail_gives_measured_time_against_the_threshold():
    assert _over("idle", 5.4, 1) == "idle 5 s > 1 s"
    assert _over("idle", None, 600) == "idle > 10 min"


REAL = "postgresql+psycopg://cj:s3cret@127.0.0.1:5432/cj"
MASKED = "postgresql+psycopg://cj:***@127.0.0.1:5432/cj"


def test_a_masked_url_is_swapped_for_the_kernel_environments_real_one(monkeypatch):
    monkeypatch.setenv("CJ_DATABASE_URL", REAL)
    assert unmask_database_url(MASKED) == REAL
    assert fill_parameters(database_url=MASKED, x=1) == (REAL, 1)
    # Another database's masked URL is left alone (and then fails to connect, visibly).
    other = "postgresql+psycopg://cj:***@127.0.0.1:5432/other"
    assert unmask_database_url(other) == other
    assert unmask_database_url("sqlite:///x.sqlite3") == "sqlite:///x.sqlite3"


def test_without_the_environment_variable_the_url_is_unchanged(monkeypatch):
    monkeypatch.delenv("CJ_DATABASE_URL", raising=False)
    assert unmask_database_url(MASKED) == MASKED
    assert unmask_database_url(None) is None

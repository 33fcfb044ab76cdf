"""cjlib.config: CJ_ENVIRONMENT is an allow list for destructive commands."""

from __future__ import annotations

import pytest

from cjlib import config


@pytest.mark.parametrize(
    "value", ["development", "dev", "test", "testing", "local", " Dev ", "TEST", "Local\t"]
)
def test_allowed_environments_are_disposable(monkeypatch, value):
    monkeypatch.setenv("CJ_ENVIRONMENT", value)
    assert config.is_disposable_environment()


def test_unset_or_blank_environment_defaults_to_development(monkeypatch):
    monkeypatch.delenv("CJ_ENVIRONMENT", raising=False)
    assert config.environment() == "development"
    assert config.is_disposable_environment()
    monkeypatch.setenv("CJ_ENVIRONMENT", "  ")
    assert config.environment() == "development"
    assert config.is_disposable_environment()


@pytest.mark.parametrize(
    "value",
    [
        "production",
        "prod",
        "prd",
        "live",
        "staging",
        "production-eu",
        "developmentx",
        "dev elopment",
        "ｐｒｏｄ",  # fullwidth
        "ｄｅｖ",  # fullwidth letters normalise to "dev" but were not typed as it
        "prod\u200b",  # zero-width space
        "dev\u200b",
        "\u200bdev",
        "dev\u00a0",  # a no-break space, which str.strip() would drop
        "dév",
    ],
)
def test_anything_else_is_refused(monkeypatch, value):
    monkeypatch.setenv("CJ_ENVIRONMENT", value)
    assert not config.is_disposable_environment()


def test_environment_is_normalised_with_nfkc(monkeypatch):
    monkeypatch.setenv("CJ_ENVIRONMENT", " ＰＲＯＤ ")
    assert config.environment() == "prod"

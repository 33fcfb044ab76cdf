"""cjlib's estimators against reference numbers computed outside cjlib.

``tests/fixtures/bt_reference/*.reference.json`` come from ``scripts/make_bt_reference.sh``:
BradleyTerry2 1.1-2 (``BTm``, ``br = TRUE`` for Firth, the order effect as ``~ .. + at.home``),
its covariance projected onto sum-to-zero, and an independent R transcription of sirt's
``btm`` algorithm (R's sirt is not packaged for Debian). No R is needed to run these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cjlib.scoring import fit_bradley_terry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bt_reference"
DATASETS = ["connected", "separated", "sparse"]
TOL = 1e-4


def load(name: str) -> tuple[pd.DataFrame, dict]:
    frame = pd.read_csv(FIXTURES / f"{name}.csv")
    reference = json.loads((FIXTURES / f"{name}.reference.json").read_text())
    return frame, reference


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("engine", ["choix", "sparse"])
def test_firth_matches_bradleyterry2_br(name, engine):
    frame, reference = load(name)
    expected = reference["firth"]
    result = fit_bradley_terry(frame, method="firth", engine=engine)
    scores = result.scores.loc[expected["essay_id"]]
    assert result.method == "firth" and result.engine == "dense"
    assert result.converged
    np.testing.assert_allclose(scores["theta"], expected["theta"], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores["se_fisher"], expected["se"], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", DATASETS)
def test_firth_with_order_effect_matches_bradleyterry2(name):
    frame, reference = load(name)
    expected = reference["firth_order"]
    result = fit_bradley_terry(frame, method="firth", position_effect=True)
    scores = result.scores.loc[expected["essay_id"]]
    np.testing.assert_allclose(scores["theta"], expected["theta"], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores["se_fisher"], expected["se"], atol=TOL, rtol=0)
    assert result.position_effect["estimate"] == pytest.approx(expected["delta"], abs=TOL)
    assert result.position_effect["se_fisher"] == pytest.approx(expected["se_delta"], abs=TOL)


def test_firth_is_finite_where_the_mle_does_not_exist():
    frame, reference = load("separated")
    assert "mle" not in reference  # e00 wins every comparison
    result = fit_bradley_terry(frame, method="firth")
    assert result.connected is False
    top = result.scores.loc["e00"]
    assert top["losses"] == 0 and top["wins"] > 0
    assert top["theta"] > 0
    assert np.isfinite(result.scores[["theta", "se"]].to_numpy()).all()


@pytest.mark.parametrize("position_effect", [False, True])
def test_mle_matches_bradleyterry2(position_effect):
    frame, reference = load("connected")
    expected = reference["mle_order" if position_effect else "mle"]
    result = fit_bradley_terry(frame, method="mle", position_effect=position_effect)
    scores = result.scores.loc[expected["essay_id"]]
    np.testing.assert_allclose(scores["theta"], expected["theta"], atol=TOL, rtol=0)
    np.testing.assert_allclose(scores["se"], expected["se"], atol=TOL, rtol=0)
    assert result.deviance == pytest.approx(expected["deviance"], abs=1e-6)
    if position_effect:
        assert result.position_effect["estimate"] == pytest.approx(expected["delta"], abs=TOL)
        assert result.position_effect["se"] == pytest.approx(expected["se_delta"], abs=TOL)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("estimate_eta", [False, True])
def test_sirt_mode_reproduces_the_btm_algorithm(name, estimate_eta):
    frame, reference = load(name)
    expected = reference["sirt_eta" if estimate_eta else "sirt"]
    result = fit_bradley_terry(frame, method="sirt", position_effect=estimate_eta)
    scores = result.scores.loc[expected["essay_id"]]
    assert result.method == "sirt"
    assert result.reliability_name == "mle_rel"
    assert result.iterations == expected["iter"]
    np.testing.assert_allclose(scores["theta"], expected["theta"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(scores["se_sirt"], expected["se_theta"], atol=1e-10, rtol=0)
    assert result.reliability == pytest.approx(expected["mle_rel"], abs=1e-10)
    assert result.sep_g_sirt == pytest.approx(expected["sepG"], abs=1e-10)
    if estimate_eta:
        assert result.position_effect["estimate"] == pytest.approx(expected["eta"], abs=1e-10)

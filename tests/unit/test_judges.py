"""The judge protocol, the simulated judge and the judge registry."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from cjlib.errors import UsageError
from cjlib.judges import (
    JUDGE_NAMES,
    Judge,
    JudgeResult,
    PairRequest,
    SimulatedJudge,
    make_judge,
)

ROOT = Path(__file__).resolve().parents[2]
ABILITIES = {f"E{i:02d}": (i - 10) / 4 for i in range(20)}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _request(a: str, b: str, draw_key: str | None = None) -> PairRequest:
    # Correlation ids are random, as in the workflow: decisions must not depend on them.
    return PairRequest(str(uuid.uuid4()), a, b, f"text of {a}", f"text of {b}", None, draw_key)


def _decisions(seed: int) -> list[list[object]]:
    """Decisions on a fixed request list with repeated pairs, draw keys, errors and losses."""
    judge = SimulatedJudge(ABILITIES, seed=seed, position_bias=0.2, error_rate=0.1, lost_rate=0.1)
    ids = sorted(ABILITIES)
    out = []
    for i in range(300):
        a, b = ids[(7 * i) % 20], ids[(7 * i + 1 + i % 3) % 20]
        result = judge.judge(_request(a, b, draw_key=f"k{i}" if i % 4 == 0 else None))
        out.append([result.winner, result.confidence, result.error_code, result.lost])
    return out


def _share(results: list[JudgeResult], predicate) -> float:
    return sum(map(predicate, results)) / len(results)


def _within(observed: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_decisions_are_identical_in_another_process_with_the_same_seed():
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from tests.unit.test_judges import _decisions; print(json.dumps(_decisions(11)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "99"}
    child = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], check=True, capture_output=True, text=True, env=env
    )
    here = json.loads(json.dumps(_decisions(11)))
    assert json.loads(child.stdout) == here
    outcomes = {(w, e, lost) for w, _, e, lost in here}
    assert outcomes >= {
        ("essay_a", None, False),
        ("essay_b", None, False),
        (None, "simulated_error", False),
        (None, None, True),
    }


def test_a_different_seed_gives_different_decisions():
    assert _decisions(11) != _decisions(12)


def test_draw_key_fixes_the_decision_whatever_the_call_order():
    keyed = [_request("E03", "E12", draw_key=f"batch1:{i}") for i in range(50)]
    forward = SimulatedJudge(ABILITIES, seed=3)
    backward = SimulatedJudge(ABILITIES, seed=3)
    first = [forward.judge(r).winner for r in keyed]
    second = [backward.judge(r).winner for r in reversed(keyed)][::-1]
    assert first == second
    assert len(set(first)) == 2


def test_repeated_pair_draws_independently_but_replays_on_a_new_instance():
    judge, replay_judge = SimulatedJudge(ABILITIES, seed=5), SimulatedJudge(ABILITIES, seed=5)
    run = [judge.judge(_request("E10", "E11")).winner for _ in range(40)]
    replay = [replay_judge.judge(_request("E10", "E11")).winner for _ in range(40)]
    assert run == replay
    assert len(set(run)) == 2


@pytest.mark.parametrize(
    ("theta_a", "theta_b", "discrimination"),
    [(-1.0, 1.0, 1.0), (0.0, 0.5, 1.0), (0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (2.5, 0.0, 1.0),
     (0.5, 0.0, 2.0)],
)  # fmt: skip
def test_win_rate_follows_the_bradley_terry_probability(theta_a, theta_b, discrimination):
    judge = SimulatedJudge({"a": theta_a, "b": theta_b}, seed=1, discrimination=discrimination)
    n = 4000
    results = [judge.judge(_request("a", "b", draw_key=str(i))) for i in range(n)]
    p = _sigmoid(discrimination * (theta_a - theta_b))
    assert _within(_share(results, lambda r: r.winner == "essay_a"), p, n)
    assert all(r.confidence == pytest.approx(max(p, 1 - p)) for r in results)


@pytest.mark.parametrize("bias", [-0.8, 0.0, 0.8])
def test_position_bias_shifts_the_share_of_a_wins(bias):
    judge = SimulatedJudge({"x": 0.3, "y": 0.3}, seed=2, position_bias=bias)
    n = 4000
    results = [judge.judge(_request("x", "y", draw_key=str(i))) for i in range(n)]
    assert _within(_share(results, lambda r: r.winner == "essay_a"), _sigmoid(bias), n)


def test_error_and_lost_rates_are_honoured():
    judge = SimulatedJudge(ABILITIES, seed=4, error_rate=0.2, lost_rate=0.1)
    n = 5000
    results = [judge.judge(_request("E01", "E02", draw_key=str(i))) for i in range(n)]
    lost = [r for r in results if r.lost]
    errors = [r for r in results if r.error_code is not None]
    assert _within(len(lost) / n, 0.1, n)
    assert _within(len(errors) / n, 0.9 * 0.2, n)
    assert all(r.winner is None and r.error_code is None for r in lost)
    assert all(r.winner is None and not r.lost for r in errors)
    assert {r.error_code for r in errors} == {"simulated_error"}
    decided = [r for r in results if not r.lost and r.error_code is None]
    assert len(decided) == n - len(lost) - len(errors)
    assert all(r.winner in ("essay_a", "essay_b") for r in decided)


def test_result_carries_the_correlation_id_and_a_simulated_justification():
    judge = SimulatedJudge({"weak": -3.0, "strong": 3.0}, seed=0)
    request = _request("weak", "strong")
    results = [judge.judge(request) for _ in range(200)]
    assert {r.request_correlation_id for r in results} == {request.request_correlation_id}
    for r in results:
        assert "Simulated judgement" in r.justification
        assert "essay_b (strong) had the higher ability signal" in r.justification
        assert f"chose {r.winner}" in r.justification
    # The weaker essay sometimes wins, and the justification still names the stronger one.
    assert {r.winner for r in results} == {"essay_a", "essay_b"}


def test_unknown_essay_id_raises_a_usage_error_naming_it():
    judge = SimulatedJudge(ABILITIES)
    with pytest.raises(UsageError, match="no ability for essay 'S9999'"):
        judge.judge(_request("E01", "S9999"))


def test_an_essay_cannot_be_compared_with_itself():
    with pytest.raises(UsageError, match="cannot be compared with itself"):
        SimulatedJudge(ABILITIES).judge(_request("E01", "E01"))


@pytest.mark.parametrize("params", [{"error_rate": 1.5}, {"lost_rate": -0.1}])
def test_rates_outside_zero_to_one_are_refused(params):
    with pytest.raises(UsageError, match="between 0 and 1"):
        SimulatedJudge(ABILITIES, **params)


def test_abilities_may_be_a_pandas_series():
    truth = pd.Series(ABILITIES)
    judge = SimulatedJudge(truth, seed=8)
    reference = SimulatedJudge(ABILITIES, seed=8)
    requests = [_request("E00", "E19", draw_key=str(i)) for i in range(20)]
    assert [judge.judge(r).winner for r in requests] == [
        reference.judge(r).winner for r in requests
    ]


def test_mock_is_an_alias_of_the_simulated_judge():
    simulated = make_judge("simulated", abilities=ABILITIES, seed=9, position_bias=0.5)
    mock = make_judge("MOCK", abilities=ABILITIES, seed=9, position_bias=0.5)
    assert isinstance(simulated, Judge) and isinstance(mock, Judge)
    assert isinstance(mock, SimulatedJudge)
    assert mock.judge_id == "simulated"
    requests = [_request("E05", "E06", draw_key=str(i)) for i in range(100)]
    assert [mock.judge(r).winner for r in requests] == [simulated.judge(r).winner for r in requests]
    assert make_judge("mock", abilities=ABILITIES, judge_id="sim-2").judge_id == "sim-2"


def test_unknown_judge_name_lists_the_choices():
    with pytest.raises(UsageError) as info:
        make_judge("gpt-judge", abilities=ABILITIES)
    assert "unknown judge 'gpt-judge'" in str(info.value)
    assert all(name in str(info.value) for name in ("simulated", "mock"))
    assert set(JUDGE_NAMES) == {"simulated", "mock", "llm", "replay"}


def test_simulated_judge_needs_abilities_and_known_parameters():
    with pytest.raises(UsageError, match="needs abilities"):
        make_judge("simulated")
    with pytest.raises(UsageError, match="takes discrimination, position_bias"):
        make_judge("simulated", abilities=ABILITIES, temperature=0.3)


@pytest.mark.parametrize(
    "fields",
    [{"winner": "essay_c"}, {"winner": "essay_a", "lost": True},
     {"winner": "essay_b", "error_code": "x"}],
)  # fmt: skip
def test_judge_result_refuses_inconsistent_fields(fields):
    with pytest.raises(ValueError):
        JudgeResult("cid", **fields)


def _mixed_requests(n: int = 400) -> list[PairRequest]:
    """Repeated pairs, some with draw keys, in both orders."""
    ids = sorted(ABILITIES)
    return [
        _request(ids[(3 * i) % 20], ids[(3 * i + 1 + i % 5) % 20],
                 draw_key=f"w{i}" if i % 3 else None)
        for i in range(n)
    ]  # fmt: skip


def test_judge_many_makes_the_decisions_judge_makes_one_by_one():
    params = {"seed": 11, "discrimination": 1.4, "position_bias": 0.3, "error_rate": 0.1,
              "lost_rate": 0.1}  # fmt: skip
    requests = _mixed_requests()
    one_by_one = SimulatedJudge(ABILITIES, **params)
    expected = [one_by_one.judge(r) for r in requests]
    bulk = SimulatedJudge(ABILITIES, **params)
    got = bulk.judge_many(requests[:150]) + bulk.judge_many(requests[150:])
    assert got == expected
    outcomes = {(r.winner is not None, r.error_code is not None, r.lost) for r in got}
    assert outcomes == {(True, False, False), (False, True, False), (False, False, True)}


def test_judge_many_refuses_before_drawing_so_the_one_by_one_fallback_draws_the_same():
    requests = _mixed_requests(40)
    bad = [*requests[:20], _request("E01", "NOT_AN_ESSAY"), *requests[20:]]
    judge = SimulatedJudge(ABILITIES, seed=4)
    with pytest.raises(UsageError, match="NOT_AN_ESSAY"):
        judge.judge_many(bad)
    with pytest.raises(UsageError, match="compared with itself"):
        judge.judge_many([*requests[:5], _request("E03", "E03")])
    # The failed calls counted no repeats: what follows is what a fresh judge decides.
    assert judge.judge_many(requests) == SimulatedJudge(ABILITIES, seed=4).judge_many(requests)

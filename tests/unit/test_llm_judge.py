"""The LLM judge: answer contract, prompts, retries, rate limit, costs, secrets, replay, orders.

Transport tests talk to the real HTTP test server of :mod:`cjlib.testing.llm_server` on
127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import pickle
import time

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cjlib.errors import UsageError
from cjlib.judges import JudgeResult, PairRequest, make_judge
from cjlib.llm import contract
from cjlib.llm.audit import JudgeCall
from cjlib.llm.contract import AnswerError, parse_answer
from cjlib.llm.costs import CostTracker, ModelPrice, load_price_table, price_for
from cjlib.llm.judge import LLMJudge
from cjlib.llm.orders import both_orders, order_agreement, wilson_interval
from cjlib.llm.prompts import load_prompt_template, parse_prompt_template
from cjlib.llm.ratelimit import RequestRateLimiter
from cjlib.llm.redact import Secret, mask_secrets
from cjlib.llm.replay import ReplayJudge
from cjlib.llm.retry import RetryPolicy, parse_retry_after
from cjlib.llm.settings import LLMConfig
from cjlib.testing.llm_server import Faults, running_llm_server, text_key

KEY = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"
TEXTS = {
    f"Essay {i}: my summer {{job}} was {'very ' * i}interesting, and I learned a lot.": float(i)
    for i in range(6)
}
ESSAYS = list(TEXTS)


@pytest.fixture(autouse=True)
def _llm_env(monkeypatch):
    monkeypatch.setenv("CJ_LLM_API_KEY", KEY)
    monkeypatch.delenv("CJ_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CJ_LLM_MODEL", raising=False)


def _config(base_url: str, **settings) -> LLMConfig:
    defaults = {"model": "gpt-4o-mini", "backoff_base_s": 0.01, "timeout_s": 5.0}
    return LLMConfig(base_url=base_url, **{**defaults, **settings})


def _request(i: int, j: int, cid: str | None = None) -> PairRequest:
    return PairRequest(
        cid or f"cid-{i}-{j}",
        f"STUDENT-{i:03d}-ID",
        f"STUDENT-{j:03d}-ID",
        ESSAYS[i],
        ESSAYS[j],
        prompt="Write about a summer job.",
    )


def _judge(base_url: str, **settings) -> LLMJudge:
    return LLMJudge(_config(base_url, **settings), seed=1)


# -- the answer contract ---------------------------------------------------------------------

VALID = {"winner": "A", "confidence": 4, "justification": "Clearer structure."}


@pytest.mark.parametrize(
    ("content", "winner", "confidence"),
    [
        (json.dumps(VALID), "A", 4),
        ('  {"winner": "B", "confidence": 1, "justification": "x"}\n', "B", 1),
        ("```json\n" + json.dumps(VALID) + "\n```", "A", 4),
        ("```\n" + json.dumps({**VALID, "confidence": 5}) + "\n```", "A", 5),
    ],
    ids=["plain", "whitespace", "fenced-json", "fenced-bare"],
)
def test_contract_accepts_the_object_plain_or_fenced(content, winner, confidence):
    answer = parse_answer(content, finish_reason="stop")
    assert (answer.winner, answer.confidence) == (winner, confidence)
    assert answer.winner_essay == {"A": "essay_a", "B": "essay_b"}[winner]


def _with(**changes):
    obj = {**VALID, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("content", "kwargs", "code", "detail"),
    [
        ("The better essay is A.", {}, "invalid_response", "not a JSON object"),
        ("[1, 2]", {}, "invalid_response", "not object"),
        ("", {}, "invalid_response", "no content"),
        (None, {}, "invalid_response", "no content"),
        (_with(winner="C"), {}, "invalid_response", "winner"),
        (_with(winner="a"), {}, "invalid_response", "winner"),
        (_with(winner="essay_a"), {}, "invalid_response", "winner"),
        (_with(winner=None), {}, "invalid_response", "winner"),
        (_with(winner=_DROP), {}, "invalid_response", "missing field(s): winner"),
        (_with(confidence=_DROP), {}, "invalid_response", "missing field(s): confidence"),
        (_with(justification=_DROP), {}, "invalid_response", "justification"),
        (_with(justification="  "), {}, "invalid_response", "justification"),
        (_with(confidence=0), {}, "invalid_response", "1–5"),
        (_with(confidence=6), {}, "invalid_response", "1–5"),
        (_with(confidence=4.0), {}, "invalid_response", "integer"),
        (_with(confidence="4"), {}, "invalid_response", "integer"),
        (_with(confidence=True), {}, "invalid_response", "integer"),
        (_with(reasoning="extra"), {}, "invalid_response", "unexpected field(s): reasoning"),
        (
            '{"winner": "A", "winner": "B", "confidence": 3, "justification": "x"}',
            {},
            "invalid_response",
            "repeats winner",
        ),
        ("Sure!\n```json\n" + json.dumps(VALID) + "\n```", {}, "invalid_response", "JSON"),
        ('{"winner": "A", "confid', {"finish_reason": "length"}, "invalid_response", "truncated"),
        (None, {"refusal": "I cannot help with that."}, "refusal", "refused"),
        (json.dumps(VALID), {"refusal": "No."}, "refusal", "refused"),
        ("", {"finish_reason": "content_filter"}, "refusal", "content filter"),
    ],
)
def test_contract_fails_everything_else_with_a_code(content, kwargs, code, detail):
    with pytest.raises(AnswerError) as info:
        parse_answer(content, **kwargs)
    assert info.value.code == code
    assert detail in info.value.detail


def test_every_error_code_is_listed_once():
    assert len(set(contract.ERROR_CODES)) == len(contract.ERROR_CODES)
    assert set(contract.ERROR_CODES) >= contract.CONTRACT_ERROR_CODES


def test_response_format_is_a_strict_json_schema_of_the_contract():
    fmt = contract.RESPONSE_FORMAT
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert set(schema["required"]) == {"winner", "confidence", "justification"}
    assert schema["additionalProperties"] is False


# -- prompt templates ------------------------------------------------------------------------

TEMPLATE = b"""comment {not_a_placeholder} is ignored here
## system
Judge fairly. Answer {"winner": "A"}.
## user
Task: {instructions}
Scale: {grade_scale}
A: {essay_a}
B: {essay_b}
"""


def test_template_renders_braces_in_essays_and_instructions_verbatim():
    template = parse_prompt_template(TEMPLATE, "t.md")
    essay_a = "I wrote {essay_b} and {instructions} and {{x}} and {0} and }{"
    messages = template.render(
        instructions="Use {grade_scale} {", grade_scale="F, E", essay_a=essay_a, essay_b="two"
    )
    assert messages[0] == {"role": "system", "content": 'Judge fairly. Answer {"winner": "A"}.'}
    assert messages[1]["content"] == (
        f"Task: Use {{grade_scale}} {{\nScale: F, E\nA: {essay_a}\nB: two"
    )
    assert template.sha256 == hashlib.sha256(TEMPLATE).hexdigest()


@settings(max_examples=200, deadline=None)
@given(essay_a=st.text(), essay_b=st.text(), instructions=st.text(min_size=1))
def test_rendering_puts_any_texts_in_verbatim(essay_a, essay_b, instructions):
    template = parse_prompt_template(b"## system\nS {x\n## user\n<{essay_a}|{essay_b}>", "p")
    messages = template.render(
        instructions=instructions, grade_scale="F, A", essay_a=essay_a, essay_b=essay_b
    )
    assert messages == [
        {"role": "system", "content": "S {x"},
        {"role": "user", "content": f"<{essay_a}|{essay_b}>"},
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"## user\n{essay_a} {essay_b}", "missing or empty section(s) ## system"),
        (b"## system\nx\n## user\n{essay_a}", "{essay_b} exactly once"),
        (b"## system\nx\n## user\n{essay_a} {essay_a} {essay_b}", "{essay_a} exactly once"),
        (b"## system\n{essay}\n## user\n{essay_a} {essay_b}", "unknown placeholder(s) {essay}"),
        (b"## system\nx\n## assistant\ny\n## user\n{essay_a} {essay_b}", "unknown section"),
        (b"## system\nx\n## system\ny\n## user\n{essay_a} {essay_b}", "appears twice"),
        (b"\xff\xfe## system", "not UTF-8"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(data, message):
    with pytest.raises(UsageError, match="prompt template") as info:
        parse_prompt_template(data, "bad.md")
    assert message in str(info.value)


def test_default_template_ships_as_package_data_and_a_file_template_loads(tmp_path):
    default = load_prompt_template(None)
    assert default.source == "package:eng5_default.md"
    assert "{essay_a}" in default.user and "{essay_b}" in default.user
    path = tmp_path / "mine.md"
    path.write_bytes(TEMPLATE)
    mine = load_prompt_template(path)
    assert mine.sha256 == hashlib.sha256(TEMPLATE).hexdigest() != default.sha256
    with pytest.raises(UsageError, match="does not exist"):
        load_prompt_template(tmp_path / "missing.md")


def test_essay_ids_never_reach_the_server():
    bodies: list[str] = []
    with running_llm_server(TEXTS) as server:
        handle = server.handle
        server.handle = lambda body, auth: (bodies.append(json.dumps(body)), handle(body, auth))[1]
        judge = _judge(server.base_url)
        request = _request(0, 1)
        result = judge.judge(request)
        judge.close()
    assert result.winner == "essay_b"
    assert len(bodies) == 1
    assert ESSAYS[0] in json.loads(bodies[0])["messages"][1]["content"]
    for essay_id in (request.essay_a_id, request.essay_b_id, "STUDENT"):
        assert essay_id not in bodies[0]
    assert json.loads(bodies[0])["response_format"] == contract.RESPONSE_FORMAT


# -- decisions over HTTP ---------------------------------------------------------------------


def test_positions_map_to_essays_and_the_call_is_audited():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url)
        ab, ba = judge.judge(_request(4, 1)), judge.judge(_request(1, 4))
        judge.close()
    assert (ab.winner, ba.winner) == ("essay_a", "essay_b")
    assert ab.confidence == 5.0 and ab.error_code is None  # |θ_A − θ_B| = 3
    call = ab.call
    assert call.request_correlation_id == "cid-4-1"
    assert (call.essay_a_id, call.essay_b_id) == ("STUDENT-004-ID", "STUDENT-001-ID")
    assert call.model_requested == "gpt-4o-mini"
    assert call.model_reported == "gpt-4o-mini-cjtest"
    assert call.template_sha256 == load_prompt_template().sha256
    assert call.request_params["temperature"] == 0.0
    assert call.request_params["response_format"] == "json_schema"
    assert call.http_status == 200 and call.attempts == 1 and call.retries == 0
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    assert call.latency_s > 0 and call.total_s >= call.latency_s
    assert json.loads(call.response_content)["winner"] == "A"
    assert (
        json.loads(call.raw_response)["choices"][0]["message"]["content"] == call.response_content
    )


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("rate_malformed", "invalid_response"),
        ("rate_invalid_winner", "invalid_response"),
        ("rate_missing_confidence", "invalid_response"),
        ("rate_refusal", "refusal"),
        ("rate_content_filter", "refusal"),
    ],
)
def test_answers_breaking_the_contract_are_failed_comparisons(fault, code):
    with running_llm_server(TEXTS, Faults(**{fault: 1.0})) as server:
        judge = _judge(server.base_url)
        result = judge.judge(_request(0, 5))
        judge.close()
    assert result.winner is None and result.confidence is None
    assert result.error_code == code == result.call.error_code
    assert result.call.attempts == 1  # a bad answer is not retried into a good one
    assert result.call.error_detail


def test_fenced_answers_from_servers_ignoring_response_format_are_decisions():
    with running_llm_server(TEXTS, Faults(rate_fenced=1.0)) as server:
        judge = _judge(server.base_url)
        result = judge.judge(_request(5, 0))
        judge.close()
    assert result.call.response_content.startswith("```json")
    assert result.winner == "essay_a"


def test_a_server_rejecting_response_format_fails_unless_it_is_turned_off():
    with running_llm_server(TEXTS, Faults(reject_response_format=True)) as server:
        strict = _judge(server.base_url)
        failed = strict.judge(_request(0, 1))
        plain = _judge(server.base_url, use_response_format=False)
        decided = plain.judge(_request(0, 1))
        strict.close()
        plain.close()
    assert failed.error_code == "http_error" and failed.call.http_status == 400
    assert failed.call.attempts == 1
    assert decided.winner == "essay_b"
    assert decided.call.request_params["response_format"] is None


# -- retries ---------------------------------------------------------------------------------


def test_retries_honour_retry_after_on_429():
    with running_llm_server(TEXTS, Faults(first_429=2, retry_after_s=0.3)) as server:
        # No backoff of our own: any wait comes from Retry-After.
        judge = _judge(server.base_url, backoff_base_s=0.0)
        result = judge.judge(_request(0, 1))
        judge.close()
        requests = server.requests_by_pair()
    assert result.winner == "essay_b"
    assert result.call.attempt_errors == ("http_429", "http_429")
    assert result.call.attempts == 3 and result.call.retries == 2
    assert result.call.total_s >= 0.6
    assert requests[(text_key(ESSAYS[0]), text_key(ESSAYS[1]))] == 3


def test_retries_are_bounded_and_end_with_an_error_code():
    cases = [
        (Faults(rate_429=1.0), "rate_limited", "http_429"),
        (Faults(rate_500=1.0), "server_error", "http_500"),
    ]
    for faults, code, attempt_error in cases:
        with running_llm_server(TEXTS, faults) as server:
            judge = _judge(server.base_url, max_retries=2)
            result = judge.judge(_request(0, 1))
            judge.close()
            sent = sum(server.requests_by_pair().values())
        assert result.error_code == code and result.winner is None
        assert result.call.attempt_errors == (attempt_error,) * 3
        assert sent == 3


def test_a_stalled_server_times_out_and_is_retried():
    faults = Faults(rate_stall=1.0, stall_s=3.0)
    with running_llm_server(TEXTS, faults) as server:
        judge = _judge(server.base_url, timeout_s=0.2, max_retries=1)
        start = time.monotonic()
        result = judge.judge(_request(0, 1))
        elapsed = time.monotonic() - start
        judge.close()
    assert result.error_code == "timeout"
    assert result.call.attempt_errors == ("timeout", "timeout")
    assert result.call.http_status is None
    assert elapsed < 2.5


def test_a_wrong_key_is_an_auth_error_without_retries(monkeypatch):
    with running_llm_server(TEXTS, api_key="sk-the-right-one") as server:
        judge = _judge(server.base_url)
        result = judge.judge(_request(0, 1))
        judge.close()
        monkeypatch.setenv("CJ_LLM_API_KEY", "sk-the-right-one")
        good = _judge(server.base_url)
        decided = good.judge(_request(0, 1))
        good.close()
    assert result.error_code == "auth_error" and result.call.attempts == 1
    assert "CJ_LLM_API_KEY" in result.call.error_detail
    assert decided.winner == "essay_b"


def test_parse_retry_after_reads_seconds_milliseconds_and_dates():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "-3"}) == 0.0
    date = "Thu, 01 Jan 2026 00:00:10 GMT"
    assert parse_retry_after({"Retry-After": date}, now=1767225600.0) == pytest.approx(10.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_jittered_exponential_and_capped():
    import random

    policy = RetryPolicy(base_s=1.0, max_backoff_s=5.0, max_retry_after_s=30.0)
    rng = random.Random(0)
    draws = [[policy.delay(k, None, rng) for _ in range(200)] for k in range(5)]
    for k, values in enumerate(draws):
        assert min(values) >= 0 and max(values) <= min(5.0, 2.0**k)
        assert max(values) > 0.8 * min(5.0, 2.0**k)  # the whole range is used
    assert policy.delay(0, 7.0, rng) == 7.0
    assert policy.delay(0, 99.0, rng) == 30.0


# -- rate limit and concurrency --------------------------------------------------------------


def test_rate_limiter_spaces_request_starts():
    limiter = RequestRateLimiter(requests_per_minute=1200)  # one per 0.05 s

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire() for _ in range(6)))
        return time.monotonic() - start

    assert asyncio.run(run()) >= 0.25 - 1e-3
    limiter.pause(0.2)
    start = time.monotonic()
    asyncio.run(limiter.acquire())
    assert time.monotonic() - start >= 0.15
    with pytest.raises(ValueError):
        RequestRateLimiter(0)


def test_requests_per_minute_limits_the_judge():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url, requests_per_minute=600)  # 0.1 s apart
        requests = [_request(i, (i + 1) % 6) for i in range(6)]

        async def run():
            start = time.monotonic()
            results = await judge.ajudge_many(requests, concurrency=6)
            await judge.aclose()
            return results, time.monotonic() - start

        results, elapsed = asyncio.run(run())
    assert [r.request_correlation_id for r in results] == [
        r.request_correlation_id for r in requests
    ]
    assert all(r.winner for r in results)
    assert elapsed >= 0.5


def test_sync_judge_works_inside_a_running_event_loop():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url)

        async def notebook_cell() -> JudgeResult:
            return judge.judge(_request(2, 3))

        result = asyncio.run(notebook_cell())
        judge.close()
    assert result.winner == "essay_b"


# -- costs -----------------------------------------------------------------------------------


def test_price_table_is_packaged_and_matches_by_prefix(tmp_path):
    table = load_price_table()
    assert price_for("gpt-4o-mini-2024-07-18", table) == table["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06", table) == table["gpt-4o"]
    assert price_for("llama3:8b", table) is None
    own = tmp_path / "prices.toml"
    own.write_text('[models."llama3"]\nprompt_per_1k = 0.0\ncompletion_per_1k = 0.0\n')
    assert price_for("llama3:8b", load_price_table(own)) == ModelPrice(0.0, 0.0)
    own.write_text("[models.x]\nprompt_per_1k = 1\n")
    with pytest.raises(UsageError, match="not valid"):
        load_price_table(own)


def test_cost_tracker_sums_and_refuses_to_exceed_a_cap():
    price = ModelPrice(prompt_per_1k=0.01, completion_per_1k=0.03)
    assert price.cost(2000, 500) == pytest.approx(0.02 + 0.015)
    tracker = CostTracker()
    assert not tracker.would_exceed(0.0001)  # nothing known yet: the first call may go
    for _ in range(4):
        tracker.add(2000, 500, price.cost(2000, 500))
    totals = tracker.totals()
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens) == (4, 8000, 2000)
    assert totals.cost_usd == pytest.approx(0.14)
    assert not tracker.would_exceed(0.175 + 1e-9)
    assert tracker.would_exceed(0.174)
    assert tracker.would_exceed(0.20, more_calls=2)
    tracker.add(10, 10, None)
    assert tracker.totals().cost_usd is None
    with pytest.raises(UsageError, match="no price"):
        tracker.would_exceed(1.0)


def test_judge_costs_follow_the_reported_usage_and_explicit_prices():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url, prompt_price_per_1k=0.5, completion_price_per_1k=2.0)
        results = [judge.judge(_request(i, i + 1)) for i in range(4)]
        judge.close()
    calls = [r.call for r in results]
    for call in calls:
        expected = call.prompt_tokens / 1000 * 0.5 + call.completion_tokens / 1000 * 2.0
        assert call.cost_usd == pytest.approx(expected)
    totals = judge.costs.totals()
    assert totals.calls == 4
    assert totals.prompt_tokens == sum(c.prompt_tokens for c in calls)
    assert totals.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    resumed = CostTracker()
    for call in [*calls, _call("no-answer", http_status=None, error_code="timeout")]:
        resumed.add_call(call)
    assert resumed.totals() == totals


def test_unknown_model_has_no_cost_estimate():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url, model="llama3:8b")
        call = judge.judge(_request(0, 1)).call
        judge.close()
    assert call.cost_usd is None and call.prompt_tokens > 0
    assert judge.costs.totals().cost_usd is None


# -- settings and secrets --------------------------------------------------------------------


def test_settings_come_from_arguments_then_environment(monkeypatch):
    with pytest.raises(UsageError, match="CJ_LLM_BASE_URL"):
        LLMConfig.from_env(model="m")
    monkeypatch.setenv("CJ_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="CJ_LLM_MODEL"):
        LLMConfig.from_env()
    monkeypatch.setenv("CJ_LLM_MODEL", "env-model")
    assert LLMConfig.from_env().model == "env-model"
    assert LLMConfig.from_env(model="arg-model", base_url="https://h/v1").base_url == "https://h/v1"
    assert LLMConfig.from_env().api_key.reveal() == KEY
    with pytest.raises(UsageError, match="api_key"):
        LLMConfig.from_env(api_key="sk-from-an-option")
    with pytest.raises(UsageError, match="http://"):
        LLMConfig(base_url="127.0.0.1:8000", model="m")
    with pytest.raises(UsageError, match="both"):
        LLMConfig(base_url="http://h", model="m", prompt_price_per_1k=1.0)
    with pytest.raises(UsageError, match="concurrency"):
        LLMConfig(base_url="http://h", model="m", concurrency=0)


def test_make_judge_builds_an_llm_judge_from_the_environment(monkeypatch):
    monkeypatch.setenv("CJ_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("CJ_LLM_MODEL", "gpt-4o-mini")
    judge = make_judge("llm", temperature=0.2)
    assert isinstance(judge, LLMJudge) and judge.config.temperature == 0.2
    assert judge.judge_id == "llm:gpt-4o-mini"


def test_secret_never_shows_itself():
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret) and KEY not in f"{secret}"
    assert secret.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    text = f"failed with key {KEY}; header Authorization: Bearer sk-other-123"
    masked = mask_secrets(text, [secret])
    assert KEY not in masked and "sk-other-123" not in masked and "***" in masked


def test_the_key_appears_in_no_log_repr_or_call_record(caplog):
    caplog.set_level(logging.DEBUG)
    faults = Faults(first_429=1, first_500=1, rate_malformed=0.5, retry_after_s=0)
    with running_llm_server(TEXTS, faults, api_key=KEY) as server:
        judge = _judge(server.base_url)
        results = [judge.judge(_request(i, (i + 2) % 6)) for i in range(6)]
        judge.close()
    assert all(r.call.http_status == 200 for r in results)  # the key was sent and accepted
    assert any(r.call.attempt_errors for r in results)
    assert caplog.records  # the HTTP stack did log at DEBUG
    outputs = [
        caplog.text,
        repr(judge),
        repr(judge.config),
        str(judge.config),
        *(json.dumps(r.call.as_dict(), default=str) for r in results),
        *(repr(r) for r in results),
    ]
    for output in outputs:
        assert KEY not in output


# -- replay ----------------------------------------------------------------------------------


def test_replay_reproduces_stored_decisions_without_a_server():
    requests = [_request(i, j) for i in range(6) for j in range(6) if i != j][:12]
    with running_llm_server(TEXTS, Faults(rate_malformed=0.3), seed=3) as server:
        judge = _judge(server.base_url)
        original = [judge.judge(r) for r in requests]
        judge.close()
    assert any(r.error_code == "invalid_response" for r in original)
    replay = ReplayJudge([r.call for r in original])
    # Same correlation ids (a resumed batch) and new ones (a re-run batch), same order.
    same = [replay.judge(r) for r in requests]
    rerun_judge = ReplayJudge([r.call for r in original])
    rerun = [rerun_judge.judge(_request(*_ids(r), cid=f"new-{k}")) for k, r in enumerate(requests)]
    for before, a, b in zip(original, same, rerun, strict=True):
        for after in (a, b):
            assert (after.winner, after.confidence, after.error_code) == (
                before.winner,
                before.confidence,
                before.error_code,
            )
            assert after.call.model_reported == before.call.model_reported
    assert [r.request_correlation_id for r in rerun] == [f"new-{k}" for k in range(12)]
    # The reverse order was never asked: replay does not guess it from the forward answer.
    missing = rerun_judge.judge(_request(1, 0, cid="reverse"))
    assert missing.winner is None and missing.error_code == "replay_missing"


def _ids(request: PairRequest) -> tuple[int, int]:
    return ESSAYS.index(request.essay_a_text), ESSAYS.index(request.essay_b_text)


def test_replay_uses_the_last_call_of_a_resent_pair():
    first = _call("c1", winner=None, error_code="timeout")
    second = _call("c1", winner="essay_b", confidence=3)
    replay = ReplayJudge([first, second])
    assert replay.judge(_request(0, 1, cid="c1")).winner == "essay_b"
    assert len(replay) == 1


def _call(cid: str, **fields) -> JudgeCall:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    base = {
        "request_correlation_id": cid,
        "essay_a_id": "STUDENT-000-ID",
        "essay_b_id": "STUDENT-001-ID",
        "judge_id": "llm:m",
        "template_sha256": "0" * 64,
        "model_requested": "m",
        "started_at": now,
        "completed_at": now,
        "total_s": 0.1,
        "attempts": 1,
    }
    return JudgeCall(**{**base, **fields})


# -- both orders and position bias -----------------------------------------------------------


def test_both_orders_swaps_positions_with_a_new_correlation_id():
    request = PairRequest("c1", "x", "y", "text x", "text y", prompt="p", draw_key="b:1")
    ab, ba = both_orders(request, new_correlation_id=lambda: "c2")
    assert ab is request
    assert (ba.request_correlation_id, ba.essay_a_id, ba.essay_b_id) == ("c2", "y", "x")
    assert (ba.essay_a_text, ba.essay_b_text, ba.prompt, ba.draw_key) == (
        "text y",
        "text x",
        "p",
        "b:1:BA",
    )


def _decisions(model: str, outcomes: list[tuple[str, str]]) -> list[dict]:
    """Rows for pairs (e_k, f_k): first the AB decision, then the BA one."""
    rows = []
    for k, (ab, ba) in enumerate(outcomes):
        rows.append({"model": model, "essay_a_id": f"e{k}", "essay_b_id": f"f{k}", "winner": ab})
        rows.append({"model": model, "essay_a_id": f"f{k}", "essay_b_id": f"e{k}", "winner": ba})
    return rows


def test_order_agreement_counts_agreement_position_share_and_effect():
    # 6 pairs agree (same essay wins both orders), 3 answered A twice, 1 answered B twice.
    outcomes = (
        [("essay_a", "essay_b")] * 4
        + [("essay_b", "essay_a")] * 2
        + [("essay_a", "essay_a")] * 3
        + [("essay_b", "essay_b")]
    )
    rows = _decisions("m1", outcomes) + _decisions("m2", [("essay_a", "essay_b")] * 5)
    rows.append({"model": "m1", "essay_a_id": "e0", "essay_b_id": "f0", "winner": "error"})
    rows.append({"model": "m2", "essay_a_id": "z", "essay_b_id": "w", "winner": None})
    result = order_agreement(pd.DataFrame(rows)).set_index("model")
    m1 = result.loc["m1"]
    assert (m1.n_decisions, m1.a_wins, m1.n_matched, m1.n_agree) == (20, 12, 10, 6)
    assert m1.agreement == pytest.approx(0.6)
    assert (m1.n_both_a, m1.n_both_b) == (3, 1)
    assert m1.position_effect == pytest.approx(0.5 * math.log(3))
    half = stats.norm.ppf(0.975) * 0.5 * math.sqrt(1 / 3 + 1)
    assert m1.position_effect_high - m1.position_effect == pytest.approx(half)
    ci = stats.binomtest(12, 20).proportion_ci(method="wilson")
    assert (m1.a_win_share_low, m1.a_win_share_high) == pytest.approx((ci.low, ci.high))
    m2 = result.loc["m2"]
    assert (m2.n_matched, m2.agreement, m2.a_win_share) == (5, 1.0, 0.5)
    assert math.isnan(m2.position_effect)  # no disagreement: no estimate


def test_order_agreement_without_reverse_orders_has_no_agreement():
    frame = pd.DataFrame(
        [
            {"model": "m", "essay_a_id": f"a{k}", "essay_b_id": f"b{k}", "winner": "essay_a"}
            for k in range(4)
        ]
    )
    row = order_agreement(frame).iloc[0]
    assert row.n_matched == 0 and math.isnan(row.agreement)
    assert row.a_win_share == 1.0
    with pytest.raises(ValueError, match="model"):
        order_agreement(frame.drop(columns="model"))


def test_wilson_interval_matches_scipy():
    for k, n in [(0, 10), (3, 10), (10, 10), (57, 120)]:
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high))
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# -- the test server itself ------------------------------------------------------------------


def test_test_server_is_bounded_recognises_texts_and_stops_cleanly():
    with running_llm_server(TEXTS, max_requests=2) as server:
        base_url = server.base_url
        judge = _judge(base_url, max_retries=0)
        first, second = judge.judge(_request(0, 1)), judge.judge(_request(1, 0))
        over_budget = judge.judge(_request(2, 3))
        judge.close()
        assert server.answers_by_pair() == {
            (text_key(ESSAYS[0]), text_key(ESSAYS[1])): 1,
            (text_key(ESSAYS[1]), text_key(ESSAYS[0])): 1,
        }
        assert [s.status for s in server.log] == [200, 200, 410]
    assert (first.winner, second.winner) == ("essay_b", "essay_a")
    assert over_budget.error_code == "http_error" and over_budget.call.http_status == 410
    # Stopped: nothing listens any more, which the judge reports as a connection error.
    judge = _judge(base_url, max_retries=1, timeout_s=1.0)
    gone = judge.judge(_request(0, 1))
    judge.close()
    assert gone.error_code == "connection_error"
    assert gone.call.attempt_errors == ("connection_error", "connection_error")


def test_test_server_refuses_prompts_without_two_known_essays():
    with running_llm_server(TEXTS) as server:
        judge = _judge(server.base_url)
        unknown = PairRequest("c", "x", "y", "an essay it never saw", ESSAYS[0])
        result = judge.judge(unknown)
        judge.close()
    assert result.error_code == "http_error" and result.call.http_status == 400


def test_log_redaction_masks_the_key_in_http_client_loggers(caplog):
    caplog.set_level(logging.DEBUG)
    judge = LLMJudge(_config("http://127.0.0.1:9/v1"))
    logging.getLogger("openai._base_client").debug("headers: Authorization: Bearer %s", KEY)
    logging.getLogger("httpx").info("key=%s", KEY)
    assert len(caplog.records) == 2
    assert KEY not in caplog.text and "***" in caplog.text
    judge.close()

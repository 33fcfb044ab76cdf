"""The LLM judge against a faulty real HTTP server, with its calls stored and replayed.

~40 pairs with 10% 429 (Retry-After), 5% 500 and contract-breaking answers injected: every
pair is answered exactly once, broken answers are failed comparisons, the calls land in
``cj_judge_calls`` (SQLite and PostgreSQL) and a replay from the database reproduces them.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pandas as pd
import pytest
from sqlalchemy import select, text

from cjlib.db import session_scope
from cjlib.db.judge_calls import (
    judge_call_summary,
    judge_calls_frame,
    load_judge_calls,
    load_replay,
    record_judge_calls,
)
from cjlib.db.models import CJComparisonPair, CJJudgeCall
from cjlib.db.repository import create_batch_upload
from cjlib.errors import NotFoundError
from cjlib.judges import PairRequest
from cjlib.llm.judge import LLMJudge
from cjlib.llm.orders import both_orders, order_agreement
from cjlib.llm.settings import LLMConfig
from cjlib.testing.llm_server import BROKEN_KINDS, Faults, running_llm_server, text_key

KEY = "sk-integration-7a6b5c4d3e2f-SECRET"
N_ESSAYS = 16
TEXTS = {
    f"Essay {i}. "
    + " ".join(random.Random(i).choice(["good", "fine", "{x}", "ok"]) for _ in range(60)): float(i)
    for i in range(N_ESSAYS)
}
ESSAYS = list(TEXTS)
FAULTS = Faults(
    rate_429=0.10,
    retry_after_s=0,
    rate_500=0.05,
    rate_malformed=0.05,
    rate_invalid_winner=0.03,
    rate_fenced=0.05,
)


def _requests(n_pairs: int = 40) -> list[PairRequest]:
    rng = random.Random(7)
    pairs = rng.sample(list(itertools.combinations(range(N_ESSAYS), 2)), n_pairs)
    requests = []
    for k, (i, j) in enumerate(pairs):
        if rng.random() < 0.5:
            i, j = j, i
        requests.append(
            PairRequest(f"00000000-0000-0000-0000-{k:012d}", f"E{i}", f"E{j}", ESSAYS[i], ESSAYS[j])
        )
    return requests


def _judge_all(server, requests, monkeypatch) -> tuple[LLMJudge, list]:
    monkeypatch.setenv("CJ_LLM_API_KEY", KEY)
    config = LLMConfig(
        base_url=server.base_url,
        model="gpt-4o-mini",
        backoff_base_s=0.01,
        max_retries=8,
        timeout_s=10,
    )
    judge = LLMJudge(config, seed=0)

    async def run():
        try:
            return await judge.ajudge_many(requests, concurrency=8)
        finally:
            await judge.aclose()

    return judge, asyncio.run(run())


def _pair_key(request: PairRequest) -> tuple[str, str]:
    return text_key(request.essay_a_text), text_key(request.essay_b_text)


def test_forty_pairs_through_faults_are_each_answered_exactly_once(monkeypatch):
    requests = _requests()
    with running_llm_server(TEXTS, FAULTS, api_key=KEY, seed=11) as server:
        judge, results = _judge_all(server, requests, monkeypatch)
        answers = server.answers_by_pair()
        sent = server.requests_by_pair()
        kinds = server.answer_kinds()
    assert sum(sent.values()) > len(requests)  # faults did happen and were retried
    assert set(answers) == {_pair_key(r) for r in requests}
    assert set(answers.values()) == {1}
    failed = 0
    for request, result in zip(requests, results, strict=True):
        (kind,) = kinds[_pair_key(request)]
        assert result.call.attempts == sent[_pair_key(request)]
        assert result.call.http_status == 200
        if kind in BROKEN_KINDS:
            failed += 1
            assert result.winner is None and result.error_code == "invalid_response"
        else:
            truth_a = TEXTS[request.essay_a_text] > TEXTS[request.essay_b_text]
            assert result.winner == ("essay_a" if truth_a else "essay_b")
    assert failed == sum(k[0] in BROKEN_KINDS for k in kinds.values())
    assert failed >= 2  # the seed gives this run broken answers (drawn per pair, not by timing)
    assert any(k == ["fenced"] for k in kinds.values())
    totals = judge.costs.totals()
    assert totals.calls == len(requests)
    assert totals.cost_usd == pytest.approx(sum(r.call.cost_usd for r in results))


def _store_pairs(engine, requests) -> int:
    with session_scope(engine) as s:
        batch = create_batch_upload(s, assignment_id="llm-test")
        for r in requests:
            s.add(
                CJComparisonPair(
                    cj_batch_id=batch.id,
                    essay_a_els_id=r.essay_a_id,
                    essay_b_els_id=r.essay_b_id,
                    request_correlation_id=r.request_correlation_id,
                )
            )
        return batch.id


def test_calls_are_stored_with_their_pairs_and_replay_from_the_database(engine, monkeypatch):
    requests = _requests(24)
    with running_llm_server(TEXTS, FAULTS, api_key=KEY, seed=5) as server:
        _, results = _judge_all(server, requests, monkeypatch)
    batch_id = _store_pairs(engine, requests)
    with session_scope(engine) as s:
        assert record_judge_calls(s, [r.call for r in results]) == len(results)
    with session_scope(engine) as s:
        pair_ids = {
            cid: pair_id
            for cid, pair_id in s.execute(
                select(CJComparisonPair.request_correlation_id, CJComparisonPair.id)
            )
        }
        rows = s.scalars(select(CJJudgeCall).order_by(CJJudgeCall.id)).all()
        assert [(row.comparison_pair_id, row.cj_batch_id) for row in rows] == [
            (pair_ids[r.request_correlation_id], batch_id) for r in requests
        ]
        stored = load_judge_calls(s, batch_id)
        summary = judge_call_summary(s, batch_id)
        frame = judge_calls_frame(s, batch_id)
        replay = load_replay(s, batch_id)
        dump = "\n".join(str(row) for row in s.execute(text("SELECT * FROM cj_judge_calls")).all())
    assert stored == [r.call for r in results]  # every field survives the round trip
    assert summary.calls == len(results)
    assert summary.retries == sum(r.call.retries for r in results)
    assert summary.failed == sum(r.error_code is not None for r in results)
    assert summary.prompt_tokens == sum(r.call.prompt_tokens for r in results)
    assert summary.cost_usd == pytest.approx(sum(r.call.cost_usd for r in results))
    assert set(frame["model"]) == {"gpt-4o-mini-cjtest"}
    summary_row = order_agreement(frame).iloc[0]
    assert summary_row.n_decisions == sum(r.winner is not None for r in results)
    assert summary_row.a_wins == sum(r.winner == "essay_a" for r in results)
    assert KEY not in dump
    # Replay without any server: the same decisions and failures, under new correlation ids.
    for k, (request, before) in enumerate(zip(requests, results, strict=True)):
        rerun = PairRequest(
            f"rerun-{k}",
            request.essay_a_id,
            request.essay_b_id,
            request.essay_a_text,
            request.essay_b_text,
        )
        after = replay.judge(rerun)
        assert (after.winner, after.confidence, after.error_code) == (
            before.winner,
            before.confidence,
            before.error_code,
        )


def test_recording_a_call_without_its_pair_writes_nothing(engine, monkeypatch):
    requests = _requests(3)
    with running_llm_server(TEXTS, api_key=KEY) as server:
        _, results = _judge_all(server, requests, monkeypatch)
    batch_id = _store_pairs(engine, requests[:2])
    with pytest.raises(NotFoundError, match="no comparison pair"), session_scope(engine) as s:
        record_judge_calls(s, [r.call for r in results])
    with session_scope(engine) as s:
        assert s.scalars(select(CJJudgeCall)).all() == []
        with pytest.raises(NotFoundError, match="no stored LLM judge calls"):
            load_replay(s, batch_id)


def test_both_orders_measure_a_biased_servers_position_preference(monkeypatch):
    # Close abilities and a strong pull towards position A: many pairs flip with the order.
    texts = {t: a / 10 for t, a in TEXTS.items()}
    requests = [r for pair in _requests(30) for r in both_orders(pair)]
    with running_llm_server(texts, position_bias=1.0, discrimination=1.0, api_key=KEY) as server:
        _, results = _judge_all(server, requests, monkeypatch)
    frame = pd.DataFrame(
        {
            "model": [r.call.model_reported for r in results],
            "essay_a_id": [r.essay_a_id for r in requests],
            "essay_b_id": [r.essay_b_id for r in requests],
            "winner": [r.winner for r in results],
        }
    )
    row = order_agreement(frame).iloc[0]
    assert row.n_decisions == 60 and row.n_matched == 30
    assert row.a_win_share_low > 0.5  # the bias shows
    assert row.n_both_a > row.n_both_b
    assert row.agreement < 1.0

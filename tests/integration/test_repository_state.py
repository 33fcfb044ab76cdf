"""State changes update the state row and the append-only log in one transaction."""

from __future__ import annotations

import pytest

from cjlib.db import session_scope
from cjlib.db.models import CoreCJState
from cjlib.db.repository import create_batch_upload, record_state_transition
from cjlib.errors import InvalidStateTransition
from tests.integration.workflow_helpers import rows, transitions


def _new_batch(engine) -> int:
    with session_scope(engine) as s:
        return create_batch_upload(s, assignment_id="a").id


def test_transition_updates_state_and_log_together(engine):
    b = _new_batch(engine)
    with session_scope(engine) as s:
        record_state_transition(s, b, CoreCJState.GENERATING_PAIRS, reason="wave 1")
    assert rows(engine, "SELECT state FROM cj_batch_states")[0][0] == "GENERATING_PAIRS"
    assert transitions(engine, b) == ["INITIALIZING", "GENERATING_PAIRS"]
    log = rows(engine, "SELECT from_state, reason FROM cj_batch_state_transitions ORDER BY id")
    assert tuple(log[-1]) == ("INITIALIZING", "wave 1")


def test_rolled_back_transaction_leaves_neither_state_nor_log(engine):
    b = _new_batch(engine)
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        record_state_transition(s, b, CoreCJState.GENERATING_PAIRS)
        raise RuntimeError("boom")
    assert rows(engine, "SELECT state FROM cj_batch_states")[0][0] == "INITIALIZING"
    assert transitions(engine, b) == ["INITIALIZING"]


def test_disallowed_transition_is_refused(engine):
    b = _new_batch(engine)
    expected = "INITIALIZING cannot change to COMPLETED"
    with pytest.raises(InvalidStateTransition, match=expected), session_scope(engine) as s:
        record_state_transition(s, b, CoreCJState.COMPLETED)
    assert transitions(engine, b) == ["INITIALIZING"]


def test_timestamps_are_timezone_aware_utc(engine):
    b = _new_batch(engine)
    with session_scope(engine) as s:
        from cjlib.db.models import CJBatchUpload

        upload = s.get(CJBatchUpload, b)
        assert upload.created_at.tzinfo is not None
        assert upload.created_at.utcoffset().total_seconds() == 0

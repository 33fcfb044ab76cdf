"""The Batch 20 rules for ``is_anchor``, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from cjlib.db import session_scope
from cjlib.db.models import CJProcessedEssay
from cjlib.db.repository import create_batch_upload, create_or_update_cj_processed_essay


def _batch(engine) -> int:
    with session_scope(engine) as s:
        return create_batch_upload(s, assignment_id="eng5", course_id="ENG5").id


def _upsert(engine, batch_id, essay_id, metadata=None, storage="t1", text_="essay text"):
    with session_scope(engine) as s:
        create_or_update_cj_processed_essay(
            s,
            cj_batch_id=batch_id,
            els_essay_id=essay_id,
            text_storage_id=storage,
            assessment_input_text=text_,
            processing_metadata=metadata,
        )


def _stored(engine, batch_id, essay_id):
    # Read through plain SQL so the check does not depend on ORM state.
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT is_anchor, text_storage_id, processing_metadata FROM cj_processed_essays "
                "WHERE cj_batch_id = :b AND els_essay_id = :e"
            ),
            {"b": batch_id, "e": essay_id},
        ).one()
    meta = row.processing_metadata
    if isinstance(meta, str):
        import json

        meta = json.loads(meta)
    return bool(row.is_anchor), row.text_storage_id, meta


def test_insert_with_anchor_key_sets_column_true(engine):
    b = _batch(engine)
    _upsert(engine, b, "ANCHOR_A", {"is_anchor": True, "anchor_grade": "A"})
    flag, _, meta = _stored(engine, b, "ANCHOR_A")
    assert flag is True
    assert meta["is_anchor"] is True and meta["anchor_grade"] == "A"


def test_insert_without_key_is_not_anchor(engine):
    b = _batch(engine)
    _upsert(engine, b, "S1", {"source": "upload"})
    flag, _, meta = _stored(engine, b, "S1")
    assert flag is False
    assert meta == {"source": "upload", "is_anchor": False}


def test_batch20_update_without_anchor_key_keeps_flag(engine):
    b = _batch(engine)
    _upsert(engine, b, "E20", {"is_anchor": True, "anchor_grade": "C+"}, storage="old")
    _upsert(engine, b, "E20", {"bt_iteration": 3}, storage="new-storage-id")
    flag, storage, meta = _stored(engine, b, "E20")
    assert flag is True
    assert storage == "new-storage-id"
    assert meta == {"is_anchor": True, "anchor_grade": "C+", "bt_iteration": 3}


def test_update_with_explicit_false_clears_flag(engine):
    b = _batch(engine)
    _upsert(engine, b, "E1", {"is_anchor": True})
    _upsert(engine, b, "E1", {"is_anchor": False, "note": "demoted"})
    flag, _, meta = _stored(engine, b, "E1")
    assert flag is False
    assert meta["is_anchor"] is False and meta["note"] == "demoted"


def test_update_with_explicit_true_sets_flag(engine):
    b = _batch(engine)
    _upsert(engine, b, "E1", None)
    _upsert(engine, b, "E1", {"is_anchor": True})
    assert _stored(engine, b, "E1")[0] is True


def test_update_without_metadata_keeps_flag_and_metadata(engine):
    b = _batch(engine)
    _upsert(engine, b, "E1", {"is_anchor": True, "grade": "B"})
    _upsert(engine, b, "E1", None, storage="t2")
    flag, storage, meta = _stored(engine, b, "E1")
    assert (flag, storage) == (True, "t2")
    assert meta == {"is_anchor": True, "grade": "B"}


def test_same_essay_id_in_two_batches_is_independent(engine):
    b1, b2 = _batch(engine), _batch(engine)
    _upsert(engine, b1, "E1", {"is_anchor": True})
    _upsert(engine, b2, "E1", None)
    assert _stored(engine, b1, "E1")[0] is True
    assert _stored(engine, b2, "E1")[0] is False
    with session_scope(engine) as s:
        rows = s.scalars(select(CJProcessedEssay).where(CJProcessedEssay.els_essay_id == "E1"))
        assert len(rows.all()) == 2


def test_non_boolean_anchor_value_is_refused_and_writes_nothing(engine):
    b = _batch(engine)
    with pytest.raises(ValueError, match="is_anchor"):
        _upsert(engine, b, "E1", {"is_anchor": "maybe"})
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM cj_processed_essays")).scalar_one()
    assert n == 0


def test_string_booleans_from_json_are_understood(engine):
    b = _batch(engine)
    _upsert(engine, b, "E1", {"is_anchor": "true"})
    _upsert(engine, b, "E2", {"is_anchor": "false"})
    assert _stored(engine, b, "E1")[0] is True
    assert _stored(engine, b, "E2")[0] is False

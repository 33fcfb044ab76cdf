"""Property: after any sequence of upserts the column equals the last explicit is_anchor."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from cjlib.db import session_scope
from cjlib.db.repository import create_batch_upload, create_or_update_cj_processed_essay

_metadata = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"is_anchor": st.booleans(), "note": st.text(max_size=5)}),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.tuples(st.sampled_from(["E1", "E2"]), _metadata), min_size=1, max_size=8))
def test_column_equals_last_explicit_value(engine, ops):
    with session_scope(engine) as s:
        batch_id = create_batch_upload(s, assignment_id="prop").id
    expected: dict[str, bool] = {}
    merged: dict[str, dict] = {}
    for i, (essay_id, meta) in enumerate(ops):
        with session_scope(engine) as s:
            create_or_update_cj_processed_essay(
                s,
                cj_batch_id=batch_id,
                els_essay_id=essay_id,
                text_storage_id=f"t{i}",
                assessment_input_text="x",
                processing_metadata=meta,
            )
        if meta and "is_anchor" in meta:
            expected[essay_id] = meta["is_anchor"]
        else:
            expected.setdefault(essay_id, False)
        merged.setdefault(essay_id, {}).update(meta or {})
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT els_essay_id, is_anchor, processing_metadata FROM cj_processed_essays "
                "WHERE cj_batch_id = :b"
            ),
            {"b": batch_id},
        ).all()
    import json

    got = {r.els_essay_id: bool(r.is_anchor) for r in rows}
    assert got == expected
    for r in rows:
        meta = r.processing_metadata
        meta = json.loads(meta) if isinstance(meta, str) else meta
        assert meta["is_anchor"] is got[r.els_essay_id]
        assert meta == {**merged[r.els_essay_id], "is_anchor": got[r.els_essay_id]}

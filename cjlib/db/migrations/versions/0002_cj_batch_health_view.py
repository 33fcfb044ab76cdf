"""cj_batch_health view: one row per batch so operators and Grafana see stuck batches at once

Before this view, finding a batch whose upload said COMPLETE_STABLE while its state machine sat in
WAITING_CALLBACKS with no grade projections took five hand-written queries. The view puts upload
status, CJ state, comparison counters, anchor and projection counts, activity ages and a health
verdict in one row per ``cj_batch_id``, on PostgreSQL and SQLite.

Every child table is aggregated once in a GROUP BY subquery and joined on the batch id (no
correlated subqueries), so reading the whole view costs one pass over each table, and a filter
on ``cj_batch_id`` is pushed into each aggregate and served by the existing batch-id indexes.

The health rule uses the default thresholds (stuck after 600 s, scoring after 600 s, stalled
after 1800 s); ``cjlib.diagnostics.judge_health`` is the same rule in Python, re-judging with
other thresholds, and a test proves both agree.

SQLite caveat for later migrations: a ``batch_alter_table`` on a table this view reads
recreates the table, and SQLite refuses the rename while the view refers to it; drop the view
first and recreate it afterwards.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW_NAME = "cj_batch_health"

# Dialect-specific pieces of the view; the shape of the query is the same on both backends.
_POSTGRESQL = {
    "is_anchor": "e.is_anchor",
    "is_not_anchor": "NOT e.is_anchor",
    "metadata_anchor": "lower(trim(e.processing_metadata ->> 'is_anchor'))",
    "pair_activity": "MAX(GREATEST(p.submitted_at, p.completed_at))",
    "last_activity": "GREATEST(s.last_activity_at, pa.last_pair_activity_at, t.last_transition_at)",
    "seconds_since": "EXTRACT(EPOCH FROM (now() - {ts}))::double precision",
}
_SQLITE = {
    "is_anchor": "e.is_anchor = 1",
    "is_not_anchor": "e.is_anchor = 0",
    # json_extract gives 1 for JSON true; the CAST makes it comparable with the strings the
    # repository accepts as "true".
    "metadata_anchor": (
        "CASE WHEN json_valid(e.processing_metadata) THEN "
        "lower(trim(CAST(json_extract(e.processing_metadata, '$.is_anchor') AS TEXT))) END"
    ),
    # SQLite's scalar max() returns NULL when any argument is NULL, so NULLs become '' (which
    # sorts before every 'YYYY-MM-DD HH:MM:SS.ffffff' text) and '' becomes NULL again.
    "pair_activity": (
        "NULLIF(MAX(max(COALESCE(p.submitted_at, ''), COALESCE(p.completed_at, ''))), '')"
    ),
    "last_activity": (
        "NULLIF(max(COALESCE(s.last_activity_at, ''), COALESCE(pa.last_pair_activity_at, ''), "
        "COALESCE(t.last_transition_at, '')), '')"
    ),
    "seconds_since": "((julianday('now') - julianday({ts})) * 86400.0)",
}

_VIEW_SQL = """
CREATE VIEW {view} AS
SELECT
    b.cj_batch_id,
    b.bos_batch_id,
    b.batch_label,
    b.assignment_id,
    b.upload_status,
    b.cj_state,
    b.total_comparisons,
    b.submitted_comparisons,
    b.completed_comparisons,
    b.failed_comparisons,
    b.anchor_count,
    b.essay_count,
    b.grade_projection_count,
    b.created_at,
    b.last_activity_at,
    b.completed_at,
    b.seconds_since_last_activity,
    b.seconds_in_state,
    b.anchor_flag_drift_count,
    CASE
        WHEN b.cj_state = 'FAILED' OR b.upload_status = 'ERROR_PROCESSING' THEN 'failed'
        WHEN b.upload_status = 'COMPLETE_STABLE'
            AND b.cj_state IN ('WAITING_CALLBACKS', 'SCORING')
            AND b.grade_projection_count = 0
            AND b.seconds_since_last_activity > 600 THEN 'stuck_finalization'
        WHEN b.cj_state = 'SCORING'
            AND b.completed_comparisons + b.failed_comparisons >= b.submitted_comparisons
            AND b.seconds_in_state > 600 THEN 'long_scoring'
        WHEN b.cj_state = 'WAITING_CALLBACKS'
            AND b.seconds_since_last_activity > 1800 THEN 'stalled_callbacks'
        WHEN b.cj_state IS NULL
            OR b.cj_state NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN 'in_progress'
        ELSE 'ok'
    END AS health
FROM (
    SELECT
        a.*,
        {seconds_since_activity} AS seconds_since_last_activity,
        {seconds_in_state} AS seconds_in_state
    FROM (
        SELECT
            u.id AS cj_batch_id,
            u.bos_batch_id,
            u.batch_label,
            u.assignment_id,
            u.status AS upload_status,
            s.state AS cj_state,
            COALESCE(s.total_comparisons, 0) AS total_comparisons,
            COALESCE(s.submitted_comparisons, 0) AS submitted_comparisons,
            COALESCE(s.completed_comparisons, 0) AS completed_comparisons,
            COALESCE(s.failed_comparisons, 0) AS failed_comparisons,
            COALESCE(es.anchor_count, 0) AS anchor_count,
            COALESCE(es.essay_count, 0) AS essay_count,
            COALESCE(gp.grade_projection_count, 0) AS grade_projection_count,
            u.created_at,
            {last_activity} AS last_activity_at,
            u.completed_at,
            COALESCE(t.last_transition_at, u.created_at) AS state_entered_at,
            COALESCE(es.anchor_flag_drift_count, 0) AS anchor_flag_drift_count
        FROM cj_batch_uploads u
        LEFT JOIN cj_batch_states s ON s.batch_id = u.id
        LEFT JOIN (
            SELECT
                e.cj_batch_id,
                COUNT(*) AS essay_count,
                SUM(CASE WHEN {is_anchor} THEN 1 ELSE 0 END) AS anchor_count,
                SUM(
                    CASE WHEN {is_not_anchor} AND {metadata_anchor} IN ('true', '1', 'yes')
                    THEN 1 ELSE 0 END
                ) AS anchor_flag_drift_count
            FROM cj_processed_essays e
            GROUP BY e.cj_batch_id
        ) es ON es.cj_batch_id = u.id
        LEFT JOIN (
            SELECT g.cj_batch_id, COUNT(*) AS grade_projection_count
            FROM grade_projections g
            GROUP BY g.cj_batch_id
        ) gp ON gp.cj_batch_id = u.id
        LEFT JOIN (
            SELECT tr.batch_id, MAX(tr.at) AS last_transition_at
            FROM cj_batch_state_transitions tr
            GROUP BY tr.batch_id
        ) t ON t.batch_id = u.id
        LEFT JOIN (
            SELECT p.cj_batch_id, {pair_activity} AS last_pair_activity_at
            FROM cj_comparison_pairs p
            GROUP BY p.cj_batch_id
        ) pa ON pa.cj_batch_id = u.id
    ) a
) b
"""


def _view_sql(dialect: str) -> str:
    parts = {"postgresql": _POSTGRESQL, "sqlite": _SQLITE}.get(dialect)
    if parts is None:
        raise NotImplementedError(f"cj_batch_health has no definition for {dialect}")
    return _VIEW_SQL.format(
        view=VIEW_NAME,
        is_anchor=parts["is_anchor"],
        is_not_anchor=parts["is_not_anchor"],
        metadata_anchor=parts["metadata_anchor"],
        pair_activity=parts["pair_activity"],
        last_activity=parts["last_activity"],
        seconds_since_activity=parts["seconds_since"].format(ts="a.last_activity_at"),
        seconds_in_state=parts["seconds_since"].format(ts="a.state_entered_at"),
    )


def upgrade() -> None:
    op.execute(_view_sql(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {VIEW_NAME}")

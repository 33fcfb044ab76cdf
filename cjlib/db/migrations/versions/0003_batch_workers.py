"""Batch workers and pair claims: resume after a crash, several workers on one batch

A batch whose process died stayed in WAITING_CALLBACKS for good: nothing recorded which pairs
were out with a judge, or whether the process sending them was still alive. Each process
working on a batch now registers in ``cj_batch_workers`` and heartbeats while alive;
``cj_comparison_pairs.claimed_by`` names the worker that owes a pair's result, so
``cj batch resume`` re-sends exactly the pairs a dead worker claimed, and several workers share
a batch by claiming pairs (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).

Because live workers heartbeat (``cj_batch_states.last_activity_at``) every few seconds, the
health view can call a batch stalled after 120 s of silence instead of 30 minutes, and it now
does so in GENERATING_PAIRS too (a process killed while generating pairs was "in progress"
forever). The view is the one of revision 0002 with only that rule changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:30:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STALL_RULE = """WHEN b.cj_state = 'WAITING_CALLBACKS'
            AND b.seconds_since_last_activity > 1800 THEN 'stalled_callbacks'"""
_NEW_STALL_RULE = """WHEN b.cj_state IN ('GENERATING_PAIRS', 'WAITING_CALLBACKS')
            AND b.seconds_since_last_activity > 120 THEN 'stalled_callbacks'"""


def _revision_0002() -> ModuleType:
    path = Path(__file__).with_name("0002_cj_batch_health_view.py")
    spec = importlib.util.spec_from_file_location("cj_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _view_sql(dialect: str) -> str:
    sql = _revision_0002()._view_sql(dialect)
    if _OLD_STALL_RULE not in sql:
        raise RuntimeError("revision 0002's stall rule not found; the view cannot be rebuilt")
    return sql.replace(_OLD_STALL_RULE, _NEW_STALL_RULE)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW IF EXISTS cj_batch_health")
    op.create_table(
        "cj_batch_workers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cj_batch_id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=100), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["cj_batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_batch_workers_cj_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_batch_workers")),
        sa.UniqueConstraint("worker_id", name=op.f("uq_cj_batch_workers_worker_id")),
    )
    op.create_index(op.f("ix_cj_batch_workers_cj_batch_id"), "cj_batch_workers", ["cj_batch_id"])
    op.add_column("cj_comparison_pairs", sa.Column("claimed_by", sa.String(length=100)))
    op.create_index(
        "ix_cj_comparison_pairs_batch_claimed_by",
        "cj_comparison_pairs",
        ["cj_batch_id", "claimed_by"],
    )
    op.execute(_view_sql(dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW IF EXISTS cj_batch_health")
    op.drop_index("ix_cj_comparison_pairs_batch_claimed_by", table_name="cj_comparison_pairs")
    with op.batch_alter_table("cj_comparison_pairs") as batch:
        batch.drop_column("claimed_by")
    op.drop_index(op.f("ix_cj_batch_workers_cj_batch_id"), table_name="cj_batch_workers")
    op.drop_table("cj_batch_workers")
    op.execute(_revision_0002()._view_sql(dialect))

"""cj_judge_calls: an audit row per LLM judge call, so any decision can be explained and replayed

An LLM-judged batch costs money and its decisions depend on the prompt, the model snapshot the
server actually used and the sampling parameters. Until now a comparison row kept only the
winner, so nobody could say which prompt and model produced a decision, what the model
literally answered, what it cost, or re-run a notebook from the stored answers. This table
keeps, per call: the template's SHA-256, requested and reported model, request parameters,
token usage and estimated cost, latency, attempts and the error of each failed attempt, the
HTTP status, the raw response and the parsed decision or error code. Rows belong to a
comparison pair (several when a pair is re-sent after a crash) and to its batch; both
foreign keys cascade on delete and are indexed, as is the correlation id replay matches on.
The API key is never stored.

The health view (0003) does not read this table, so no view needs recreating.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cj_judge_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cj_batch_id", sa.Integer(), nullable=False),
        sa.Column("comparison_pair_id", sa.Integer(), nullable=False),
        sa.Column("request_correlation_id", sa.String(length=36), nullable=False),
        sa.Column("essay_a_els_id", sa.String(length=100), nullable=False),
        sa.Column("essay_b_els_id", sa.String(length=100), nullable=False),
        sa.Column("judge_id", sa.String(length=100), nullable=False),
        sa.Column("template_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_requested", sa.String(length=200), nullable=False),
        sa.Column("model_reported", sa.String(length=200), nullable=True),
        sa.Column("request_params", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("total_s", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_errors", sa.JSON(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("finish_reason", sa.String(length=40), nullable=True),
        sa.Column("response_content", sa.Text(), nullable=True),
        sa.Column("raw_response", sa.Text(), nullable=True),
        sa.Column("winner", sa.String(length=20), nullable=True),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cj_batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_judge_calls_cj_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["comparison_pair_id"],
            ["cj_comparison_pairs.id"],
            name=op.f("fk_cj_judge_calls_comparison_pair_id_cj_comparison_pairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_judge_calls")),
    )
    with op.batch_alter_table("cj_judge_calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cj_judge_calls_cj_batch_id"), ["cj_batch_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_cj_judge_calls_comparison_pair_id"), ["comparison_pair_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_cj_judge_calls_request_correlation_id"),
            ["request_correlation_id"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("cj_judge_calls")

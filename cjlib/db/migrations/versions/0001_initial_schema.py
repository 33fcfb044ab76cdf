"""initial CJ schema: batches, states, essays, pairs, projections, anchors, content, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-28 19:39:18.139968
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "anchor_essay_references",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("assignment_id", sa.String(length=100), nullable=False),
        sa.Column("anchor_label", sa.String(length=100), nullable=False),
        sa.Column("grade", sa.String(length=20), nullable=False),
        sa.Column("grade_scale", sa.String(length=50), nullable=False),
        sa.Column("text_storage_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anchor_essay_references")),
        sa.UniqueConstraint(
            "assignment_id",
            "anchor_label",
            "grade_scale",
            name=op.f("uq_anchor_essay_references_assignment_id_anchor_label_grade_scale"),
        ),
    )
    with op.batch_alter_table("anchor_essay_references", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_anchor_essay_references_assignment_id"), ["assignment_id"], unique=False
        )

    op.create_table(
        "assessment_instructions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("assignment_id", sa.String(length=100), nullable=False),
        sa.Column("course_id", sa.String(length=100), nullable=True),
        sa.Column("grade_scale", sa.String(length=50), nullable=False),
        sa.Column("student_prompt_text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_instructions")),
        sa.UniqueConstraint("assignment_id", name=op.f("uq_assessment_instructions_assignment_id")),
    )
    op.create_table(
        "cj_batch_uploads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bos_batch_id", sa.String(length=36), nullable=False),
        sa.Column("batch_label", sa.String(length=255), nullable=True),
        sa.Column("event_correlation_id", sa.String(length=36), nullable=False),
        sa.Column("assignment_id", sa.String(length=100), nullable=True),
        sa.Column("course_id", sa.String(length=100), nullable=True),
        sa.Column("language", sa.String(length=20), nullable=True),
        sa.Column("course_code", sa.String(length=50), nullable=True),
        sa.Column("expected_essay_count", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "FETCHING_CONTENT",
                "PERFORMING_COMPARISONS",
                "COMPLETE_STABLE",
                "COMPLETE_MAX_COMPARISONS",
                "COMPLETE_FORCED_RECOVERY",
                "COMPLETE_INSUFFICIENT_ESSAYS",
                "ERROR_PROCESSING",
                name="cj_batch_status",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("processing_metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_batch_uploads")),
        sa.UniqueConstraint("bos_batch_id", name=op.f("uq_cj_batch_uploads_bos_batch_id")),
    )
    with op.batch_alter_table("cj_batch_uploads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cj_batch_uploads_assignment_id"), ["assignment_id"], unique=False
        )

    op.create_table(
        "cj_content",
        sa.Column("text_storage_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("text_storage_id", name=op.f("pk_cj_content")),
    )
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aggregate_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("correlation_id", sa.String(length=36), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_outbox_aggregate_id"), ["aggregate_id"], unique=False
        )

    op.create_table(
        "cj_batch_state_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column(
            "from_state",
            sa.Enum(
                "INITIALIZING",
                "GENERATING_PAIRS",
                "WAITING_CALLBACKS",
                "SCORING",
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                name="from_state",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_state",
            sa.Enum(
                "INITIALIZING",
                "GENERATING_PAIRS",
                "WAITING_CALLBACKS",
                "SCORING",
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                name="to_state",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_batch_state_transitions_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_batch_state_transitions")),
    )
    with op.batch_alter_table("cj_batch_state_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cj_batch_state_transitions_batch_id"), ["batch_id"], unique=False
        )

    op.create_table(
        "cj_batch_states",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "INITIALIZING",
                "GENERATING_PAIRS",
                "WAITING_CALLBACKS",
                "SCORING",
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                name="core_cj_state",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("total_budget", sa.Integer(), nullable=True),
        sa.Column("total_comparisons", sa.Integer(), nullable=False),
        sa.Column("submitted_comparisons", sa.Integer(), nullable=False),
        sa.Column("completed_comparisons", sa.Integer(), nullable=False),
        sa.Column("failed_comparisons", sa.Integer(), nullable=False),
        sa.Column("current_iteration", sa.Integer(), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_metadata", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_batch_states_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_cj_batch_states")),
    )
    op.create_table(
        "cj_comparison_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cj_batch_id", sa.Integer(), nullable=False),
        sa.Column("essay_a_els_id", sa.String(length=100), nullable=False),
        sa.Column("essay_b_els_id", sa.String(length=100), nullable=False),
        sa.Column("request_correlation_id", sa.String(length=36), nullable=False),
        sa.Column(
            "winner",
            sa.Enum(
                "essay_a",
                "essay_b",
                "error",
                name="comparison_winner",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=True,
        ),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("judge_id", sa.String(length=100), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_metadata", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cj_batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_comparison_pairs_cj_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_comparison_pairs")),
        sa.UniqueConstraint(
            "request_correlation_id", name=op.f("uq_cj_comparison_pairs_request_correlation_id")
        ),
    )
    with op.batch_alter_table("cj_comparison_pairs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cj_comparison_pairs_batch_winner", ["cj_batch_id", "winner"], unique=False
        )

    op.create_table(
        "cj_processed_essays",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cj_batch_id", sa.Integer(), nullable=False),
        sa.Column("els_essay_id", sa.String(length=100), nullable=False),
        sa.Column("text_storage_id", sa.String(length=64), nullable=False),
        sa.Column("assessment_input_text", sa.Text(), nullable=False),
        sa.Column("current_bt_score", sa.Float(), nullable=True),
        sa.Column("current_bt_se", sa.Float(), nullable=True),
        sa.Column("comparison_count", sa.Integer(), nullable=False),
        sa.Column("is_anchor", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("processing_metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cj_batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_cj_processed_essays_cj_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cj_processed_essays")),
        sa.UniqueConstraint(
            "cj_batch_id",
            "els_essay_id",
            name=op.f("uq_cj_processed_essays_cj_batch_id_els_essay_id"),
        ),
    )
    with op.batch_alter_table("cj_processed_essays", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cj_processed_essays_batch_anchor", ["cj_batch_id", "is_anchor"], unique=False
        )

    op.create_table(
        "grade_projections",
        sa.Column("els_essay_id", sa.String(length=100), nullable=False),
        sa.Column("cj_batch_id", sa.Integer(), nullable=False),
        sa.Column("primary_grade", sa.String(length=20), nullable=False),
        sa.Column("grade_scale", sa.String(length=50), nullable=False),
        sa.Column("confidence_score", sa.Float(), nullable=False),
        sa.Column("confidence_label", sa.String(length=10), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("calculation_metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cj_batch_id"],
            ["cj_batch_uploads.id"],
            name=op.f("fk_grade_projections_cj_batch_id_cj_batch_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("els_essay_id", "cj_batch_id", name=op.f("pk_grade_projections")),
    )
    with op.batch_alter_table("grade_projections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grade_projections_cj_batch_id"), ["cj_batch_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("grade_projections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grade_projections_cj_batch_id"))

    op.drop_table("grade_projections")
    with op.batch_alter_table("cj_processed_essays", schema=None) as batch_op:
        batch_op.drop_index("ix_cj_processed_essays_batch_anchor")

    op.drop_table("cj_processed_essays")
    with op.batch_alter_table("cj_comparison_pairs", schema=None) as batch_op:
        batch_op.drop_index("ix_cj_comparison_pairs_batch_winner")

    op.drop_table("cj_comparison_pairs")
    op.drop_table("cj_batch_states")
    with op.batch_alter_table("cj_batch_state_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cj_batch_state_transitions_batch_id"))

    op.drop_table("cj_batch_state_transitions")
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_outbox_aggregate_id"))

    op.drop_table("event_outbox")
    op.drop_table("cj_content")
    with op.batch_alter_table("cj_batch_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cj_batch_uploads_assignment_id"))

    op.drop_table("cj_batch_uploads")
    op.drop_table("assessment_instructions")
    with op.batch_alter_table("anchor_essay_references", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_anchor_essay_references_assignment_id"))

    op.drop_table("anchor_essay_references")

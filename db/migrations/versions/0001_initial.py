"""Create workspaces, settings, segments, broadcasts, deliveries and the audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The status values of segments.ports.BroadcastStatus and DeliveryStatus when this revision was
# written. They are spelled out because a migration must not change when the enums do.
BROADCAST_STATUSES = "'resolving', 'sending', 'sent', 'partially_sent', 'failed'"
DELIVERY_STATUSES = "'pending', 'sending', 'sent', 'failed'"


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name="pk_workspaces"),
    )

    op.create_table(
        "workspace_settings",
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("channel_field", sa.String(255), nullable=True),
        sa.Column("channel_template", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("managers", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name="pk_workspace_settings"),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["workspaces.team_id"],
            name="fk_workspace_settings_team_id_workspaces",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("name_key", sa.String(240), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
        sa.UniqueConstraint("team_id", "name_key", name="uq_segments_team_id_name_key"),
    )

    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("segment_name", sa.String(80), nullable=False),
        sa.Column("rules_text", sa.Text(), nullable=False),
        sa.Column("message_text", sa.Text(), nullable=False),
        sa.Column("message_blocks", sa.JSON(), nullable=True),
        sa.Column("sent_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("unmapped", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_broadcasts"),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name="fk_broadcasts_segment_id_segments",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(f"status IN ({BROADCAST_STATUSES})", name="ck_broadcasts_status"),
    )
    op.create_index("ix_broadcasts_team_id_created_at", "broadcasts", ["team_id", "created_at"])
    op.create_index("ix_broadcasts_segment_id", "broadcasts", ["segment_id"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("channel_name", sa.String(255), nullable=False),
        sa.Column("is_private", sa.Boolean(), nullable=False),
        sa.Column("companies", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name="fk_deliveries_broadcast_id_broadcasts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "broadcast_id", "channel_id", name="uq_deliveries_broadcast_id_channel_id"
        ),
        sa.CheckConstraint(f"status IN ({DELIVERY_STATUSES})", name="ck_deliveries_status"),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_team_id_created_at", "audit_log", ["team_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_team_id_created_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_deliveries_status", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_broadcasts_segment_id", table_name="broadcasts")
    op.drop_index("ix_broadcasts_team_id_created_at", table_name="broadcasts")
    op.drop_table("broadcasts")
    op.drop_table("segments")
    op.drop_table("workspace_settings")
    op.drop_table("workspaces")

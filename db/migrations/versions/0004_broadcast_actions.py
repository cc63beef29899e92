"""Add the tables that record edits, deletes and follow-ups of a broadcast's posted messages.

`broadcast_actions` has one row per action (kind, text, who, when, status), and `action_targets`
one row per posted message the action changes or replies under, with the status, error, reason,
attempts and the follow-up's reply ts. Targets are recorded before each Slack call, like
deliveries, so a restarted process can finish an action without repeating a reply.

Revision ID: 0004
Revises: 0003
Create Date: 2025-03-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out so this migration does not change when the enums in `segments.followups` do.
ACTION_STATUSES = "'running', 'done', 'partially_done', 'failed'"
TARGET_STATUSES = "'pending', 'sending', 'done', 'failed', 'unconfirmed'"


def upgrade() -> None:
    op.create_table(
        "broadcast_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("blocks", sa.JSON(), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"status IN ({ACTION_STATUSES})", name=op.f("ck_broadcast_actions_status")
        ),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_actions_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_actions")),
    )
    op.create_index(
        op.f("ix_broadcast_actions_broadcast_id"), "broadcast_actions", ["broadcast_id"]
    )
    op.create_index(op.f("ix_broadcast_actions_status"), "broadcast_actions", ["status"])

    op.create_table(
        "action_targets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reply_ts", sa.String(32), nullable=True),
        sa.Column("sending_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN ({TARGET_STATUSES})", name=op.f("ck_action_targets_status")),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["broadcast_actions.id"],
            name=op.f("fk_action_targets_action_id_broadcast_actions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_action_targets_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_targets")),
        sa.UniqueConstraint(
            "action_id", "delivery_id", name=op.f("uq_action_targets_action_id_delivery_id")
        ),
    )
    op.create_index(op.f("ix_action_targets_delivery_id"), "action_targets", ["delivery_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_action_targets_delivery_id"), table_name="action_targets")
    op.drop_table("action_targets")
    op.drop_index(op.f("ix_broadcast_actions_status"), table_name="broadcast_actions")
    op.drop_index(op.f("ix_broadcast_actions_broadcast_id"), table_name="broadcast_actions")
    op.drop_table("broadcast_actions")

"""Add the columns for scheduled broadcasts and the workspace frequency cap.

A scheduled broadcast is a `broadcasts` row in status `scheduled` with `scheduled_at` (UTC), the
time zone the sender picked (`scheduled_timezone`, for showing the time back to them) and the
channel ids the confirmation showed (`confirmed_channels`, to report how the audience changed by
send time). The index on `(status, scheduled_at)` serves the scheduler's search for due rows, and
the index on `deliveries.channel_id` serves the frequency cap's search for recent posts.
`workspace_settings.frequency_cap_days` is NULL when the cap is off.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("scheduled_timezone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("confirmed_channels", sa.JSON(), nullable=True))
        batch.create_index("ix_broadcasts_status_scheduled_at", ["status", "scheduled_at"])

    with op.batch_alter_table("deliveries") as batch:
        batch.create_index("ix_deliveries_channel_id", ["channel_id"])

    with op.batch_alter_table("workspace_settings") as batch:
        batch.add_column(sa.Column("frequency_cap_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    # A scheduled broadcast cannot exist without its time, so the rows still waiting are cancelled
    # rather than left `scheduled` with nothing to say when to send them.
    op.execute("UPDATE broadcasts SET status = 'cancelled' WHERE status = 'scheduled'")

    with op.batch_alter_table("workspace_settings") as batch:
        batch.drop_column("frequency_cap_days")

    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_channel_id")

    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_index("ix_broadcasts_status_scheduled_at")
        batch.drop_column("confirmed_channels")
        batch.drop_column("scheduled_timezone")
        batch.drop_column("scheduled_at")

"""Widen the status checks and add the columns that let a broadcast survive a restart.

Broadcasts gain `scheduled` and `cancelled`, deliveries gain `skipped`, `unconfirmed` and
`cancelled`. New columns: `broadcasts.rules` (the segment's rules at send time, for resolving again
after a crash), `broadcasts.report_channel` and `report_ts` (the sender's report DM), and
`deliveries.sending_started_at` (the start of the history lookup window for a post whose outcome
is unknown). SQLite cannot alter a CHECK constraint, so the tables are rebuilt with
`batch_alter_table`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out for the same reason as in 0001: a migration must not change when the enums do.
OLD_BROADCAST_STATUSES = "'resolving', 'sending', 'sent', 'partially_sent', 'failed'"
OLD_DELIVERY_STATUSES = "'pending', 'sending', 'sent', 'failed'"
BROADCAST_STATUSES = (
    "'scheduled', 'resolving', 'sending', 'sent', 'partially_sent', 'failed', 'cancelled'"
)
DELIVERY_STATUSES = (
    "'pending', 'sending', 'sent', 'failed', 'skipped', 'unconfirmed', 'cancelled'"
)


def _widen_status_check(batch: BatchOperations, *, name: str, statuses: str) -> None:
    # 0001 passed its explicit name through the naming convention, so the constraint it created
    # is called `ck_<table>_ck_<table>_status`. The plain name here goes through the same
    # convention and finds it. The new constraint gets its final name through `op.f`.
    batch.drop_constraint(name, type_="check")
    batch.create_check_constraint(op.f(name), f"status IN ({statuses})")


def _restore_status_check(batch: BatchOperations, *, name: str, statuses: str) -> None:
    # The reverse of `_widen_status_check`, which restores the name 0001 gave the constraint.
    batch.drop_constraint(op.f(name), type_="check")
    batch.create_check_constraint(name, f"status IN ({statuses})")


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("rules", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("report_channel", sa.String(64), nullable=True))
        batch.add_column(sa.Column("report_ts", sa.String(32), nullable=True))
        _widen_status_check(batch, name="ck_broadcasts_status", statuses=BROADCAST_STATUSES)

    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("sending_started_at", sa.DateTime(timezone=True), nullable=True)
        )
        _widen_status_check(batch, name="ck_deliveries_status", statuses=DELIVERY_STATUSES)


def downgrade() -> None:
    # Rows in a status the old check does not allow would make the rebuild fail, so they are
    # mapped to the nearest old status first: cancelled and skipped were never posted (failed),
    # and unconfirmed may be posted (failed, which the old sender used for unknown outcomes).
    op.execute(
        "UPDATE deliveries SET status = 'failed' "
        "WHERE status IN ('skipped', 'unconfirmed', 'cancelled')"
    )
    op.execute("UPDATE broadcasts SET status = 'failed' WHERE status IN ('scheduled', 'cancelled')")

    with op.batch_alter_table("deliveries") as batch:
        _restore_status_check(batch, name="ck_deliveries_status", statuses=OLD_DELIVERY_STATUSES)
        batch.drop_column("sending_started_at")

    with op.batch_alter_table("broadcasts") as batch:
        _restore_status_check(batch, name="ck_broadcasts_status", statuses=OLD_BROADCAST_STATUSES)
        batch.drop_column("report_ts")
        batch.drop_column("report_channel")
        batch.drop_column("rules")

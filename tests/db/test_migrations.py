"""The packaged Alembic migrations: they apply, repeat safely and match the models exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.migrate import alembic_config, upgrade_database
from db.models import Base
from segments.ports import BroadcastStatus, DeliveryStatus

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TABLES = {
    "action_targets",
    "alembic_version",
    "broadcast_actions",
    "audit_log",
    "broadcasts",
    "deliveries",
    "segments",
    "workspace_settings",
    "workspaces",
}


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def _current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def test_upgrade_creates_every_table_on_empty_database(database_url: str) -> None:
    await upgrade_database(database_url)

    engine = create_engine(database_url)
    try:
        tables = await _table_names(engine)
        revision = await _current_revision(engine)
    finally:
        await engine.dispose()
    assert tables == EXPECTED_TABLES
    assert revision == _head_revision()


async def test_upgrade_twice_keeps_data_and_revision(database_url: str) -> None:
    engine = create_engine(database_url)
    await upgrade_database(engine)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO workspaces (team_id, name, created_at) "
                "VALUES ('T1', 'Acme', '2025-01-01')"
            )
        )

    await upgrade_database(engine)

    async with engine.connect() as connection:
        names = (await connection.execute(text("SELECT name FROM workspaces"))).scalars().all()
    revision = await _current_revision(engine)
    await engine.dispose()
    assert names == ["Acme"]
    assert revision == _head_revision()


async def test_migrated_schema_matches_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_schema_differences, Base.metadata)

    assert differences == []


async def test_schema_comparison_reports_missing_column(engine: AsyncEngine) -> None:
    # Guards the drift test above: the comparison must notice a column the migration lacks.
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["segments"].append_column(Column("color", Integer, nullable=True))

    async with engine.connect() as connection:
        differences = await connection.run_sync(_schema_differences, drifted)

    assert [difference[0] for difference in differences] == ["add_column"]


async def test_downgrade_to_base_removes_tables(engine: AsyncEngine) -> None:
    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)

    assert await _table_names(engine) == {"alembic_version"}
    assert await _current_revision(engine) is None


@pytest.mark.usefixtures("sqlite_only")
async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
        busy_timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()

    assert foreign_keys == 1
    assert journal_mode == "wal"
    assert busy_timeout is not None and busy_timeout > 0


def test_alembic_command_upgrades_and_finds_no_drift(tmp_path: Path) -> None:
    # The developer path: env.py opens its own engine from DATABASE_URL.
    database = tmp_path / "cli.db"
    environment = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    alembic = [sys.executable, "-m", "alembic", "-c", "db/alembic.ini"]

    upgrade = subprocess.run(
        [*alembic, "upgrade", "head"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    check = subprocess.run(
        [*alembic, "check"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert upgrade.returncode == 0, upgrade.stderr
    assert check.returncode == 0, check.stderr
    assert database.exists()


async def test_status_checks_match_status_enums(engine: AsyncEngine) -> None:
    # compare_metadata ignores CHECK constraints, so this guards the status lists in the migration.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO broadcasts (id, team_id, segment_name, rules_text, message_text, "
                "sent_by, status, unmapped, created_at) "
                "VALUES (1, 'T1', 'Renewals', '', '', 'U1', 'sending', '[]', '2025-01-01')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO deliveries (id, broadcast_id, channel_id, channel_name, is_private, "
                "companies, status, attempts, created_at, updated_at) "
                "VALUES (1, 1, 'C1', 'customer-acme', false, '[]', 'pending', 0, "
                "'2025-01-01', '2025-01-01')"
            )
        )

    for table, statuses in (("broadcasts", BroadcastStatus), ("deliveries", DeliveryStatus)):
        for status in statuses:
            async with engine.begin() as connection:
                await connection.execute(
                    text(f"UPDATE {table} SET status = :status WHERE id = 1"), {"status": status}
                )
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text(f"UPDATE {table} SET status = 'queued' WHERE id = 1"))

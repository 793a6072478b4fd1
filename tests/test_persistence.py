"""Migrations build the schema the models describe, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect
from sqlalchemy.exc import DBAPIError, IntegrityError

from persistence import (
    AttemptOutcome,
    Base,
    CorrectionAction,
    DeliveryAttempt,
    EmailExecution,
    ExecutionStatus,
    SelfCorrectionAction,
    Workspace,
    all_workspaces,
    begin_unsynced,
    make_engine,
    read_only,
    upgrade_to_head,
)
from persistence.database import MIGRATIONS_DIR, SCHEMA_REVISION, schema_revision
from settings import Settings, SettingsError
from tools.unsubscribe_tokens import resolve_signing_secret

TABLES = {
    "workspaces",
    "circuit_execution_logs",
    "email_agent_executions",
    "email_agent_metrics",
    "email_suppression_list",
    "provider_events",
    "self_correction_actions",
    "contacts",
    "organizations",
    "campaigns",
    "synthex_tenant_profiles",
    "email_delivery_attempts",
    "sent_messages",
}


def _check_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        upgrade_to_head(engine)  # idempotent: start-up runs it every time
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


def test_the_revision_start_up_checks_is_alembics_head(tmp_path):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION

    # A database one migration behind is still brought up to it (the check only skips Alembic
    # when there is nothing to do).
    engine = make_engine(f"sqlite:///{tmp_path / 'behind.db'}")
    try:
        upgrade_to_head(engine)
        with all_workspaces(), engine.begin() as connection:
            command.downgrade(_on(config, connection), "-1")
        assert schema_revision(engine) != SCHEMA_REVISION
        upgrade_to_head(engine)
        assert schema_revision(engine) == SCHEMA_REVISION
    finally:
        engine.dispose()


def _on(config: Config, connection: Any) -> Config:
    config.attributes["connection"] = connection
    return config


def test_migrations_match_the_models_on_sqlite(tmp_path):
    _check_schema(f"sqlite:///{tmp_path / 'schema.db'}")


def test_migrations_match_the_models_on_postgresql(postgres_url):
    _check_schema(postgres_url)


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def _refused_states(url: str) -> list[str]:
    """Which of a valid and three invalid stored states the database itself refuses."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    statements = {
        "status": "UPDATE email_agent_executions SET status = 'failed'",
        "outcome": "UPDATE email_delivery_attempts SET outcome = 'lost'",
        "action": "UPDATE self_correction_actions SET action = 'retry'",
        "valid": "UPDATE email_agent_executions SET status = 'sent'",
    }
    refused = []
    try:
        with all_workspaces(), engine.begin() as connection:
            _one_row_each(connection)
        for name, statement in statements.items():
            try:
                with all_workspaces(), engine.begin() as connection:
                    connection.exec_driver_sql(statement)
            except IntegrityError:
                refused.append(name)
        return refused
    finally:
        engine.dispose()


def _one_row_each(connection: Any) -> None:
    """A workspace with one execution, one attempt and one CX08 action, all in valid states."""
    now = datetime.now(UTC)
    workspace_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
    connection.execute(
        insert(Workspace.__table__).values(
            id=workspace_id,
            name="W",
            sender_email="w@w.example",
            postal_address="1 Road",
            api_key_hash=uuid.uuid4().hex,
            created_at=now,
        )
    )
    connection.execute(
        insert(EmailExecution.__table__).values(
            id=execution_id,
            workspace_id=workspace_id,
            circuit_execution_id="e",
            client_id=str(uuid.uuid4()),
            recipient="a@b.example",
            recipient_key="a@b.example",
            subject="s",
            html_body="h",
            content_hash="0",
            message_id="<m@w>",
            status=ExecutionStatus.SENDING,
            created_at=now,
            updated_at=now,
        )
    )
    owned = {"id": str(uuid.uuid4()), "workspace_id": workspace_id, "execution_id": execution_id}
    connection.execute(
        insert(DeliveryAttempt.__table__).values(
            **owned,
            provider="smtp",
            attempt_number=1,
            outcome=AttemptOutcome.SENT,
            latency_ms=1.0,
            created_at=now,
        )
    )
    connection.execute(
        insert(SelfCorrectionAction.__table__).values(
            **owned, action=CorrectionAction.ESCALATE, reason="r", inputs={}, created_at=now
        )
    )


def test_sqlite_refuses_a_state_outside_its_type(tmp_path):
    assert _refused_states(f"sqlite:///{tmp_path / 'states.db'}") == ["status", "outcome", "action"]


def test_postgresql_refuses_a_state_outside_its_type(postgres_url):
    assert _refused_states(postgres_url) == ["status", "outcome", "action"]


def _durability_levels(url: str, read: str) -> list[object]:
    """The setting `read` returns inside: a transaction, an unsynced one, another unsynced one
    that fails, then a transaction again, all on the same pooled connection."""
    engine = make_engine(url)
    seen: set[int] = set()
    levels: list[object] = []

    def observe(connection: Any) -> None:
        seen.add(id(connection.connection.driver_connection))
        levels.append(connection.exec_driver_sql(read).scalar())

    try:
        with engine.begin() as connection:
            observe(connection)
        with begin_unsynced(engine) as connection:
            observe(connection)
        with pytest.raises(RuntimeError), begin_unsynced(engine) as connection:
            observe(connection)
            raise RuntimeError("rolled back")
        with engine.begin() as connection:
            observe(connection)
        assert len(seen) == 1  # one connection throughout: nothing leaks into the next
        return levels
    finally:
        engine.dispose()


def test_sqlite_commits_wait_for_the_disk_except_unsynced_ones(tmp_path):
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    assert _durability_levels(url, "PRAGMA synchronous") == [2, 1, 1, 2]  # FULL / NORMAL


def test_postgresql_commits_wait_for_the_disk_except_unsynced_ones(postgres_url):
    assert _durability_levels(postgres_url, "SHOW synchronous_commit") == ["on", "off", "off", "on"]


def test_postgresql_read_only_transactions_refuse_writes_and_leave_the_connection_as_it_was(
    postgres_url,
):
    engine = make_engine(postgres_url)
    seen: set[int] = set()
    try:
        with read_only(engine).connect() as reading:
            seen.add(id(reading.connection.driver_connection))
            assert reading.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
            with pytest.raises(DBAPIError, match="read-only transaction"):
                reading.exec_driver_sql("CREATE TEMPORARY TABLE scratch (n integer)")
        with engine.connect() as writing:  # the same pooled connection, writing again
            seen.add(id(writing.connection.driver_connection))
            assert writing.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"
        assert len(seen) == 1
    finally:
        engine.dispose()


def test_signing_secret_is_generated_once_beside_the_database(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    first = resolve_signing_secret(settings)
    secret_file = tmp_path / "db.sqlite.signing-secret"
    assert secret_file.exists() and len(first) >= 40
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert resolve_signing_secret(settings) == first


def test_configured_signing_secret_wins(tmp_path):
    given = "a-signing-secret-of-at-least-32-characters"
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db'}", signing_secret=given)
    assert resolve_signing_secret(settings) == given
    assert not (tmp_path / "db.signing-secret").exists()


def test_server_database_without_a_signing_secret_is_refused():
    with pytest.raises(SettingsError, match="EMAIL_SIGNING_SECRET must be set"):
        resolve_signing_secret(Settings(database_url="postgresql+psycopg://h/db"))

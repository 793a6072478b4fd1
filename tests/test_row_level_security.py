"""Row-level security on PostgreSQL (migration 0015): a workspace's transaction cannot read or
change another's rows even when a query has no workspace filter at all.

Run as the test database's own role, which is no superuser (`postgres_url`): superusers
bypass row-level security. Every other PostgreSQL test runs under the same role, so a code
path that forgot to set its workspace scope fails there too.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

import tools
from orchestration.team import run_send_sync
from persistence import Base, all_workspaces, workspace_scope
from tests.builders import ASSET, make_settings, send
from tools.crm_loader import load_crm_rows
from tools.schemas import WorkspaceArgs

RLS = importlib.import_module("persistence.migrations.versions.0015_row_level_security")
CLIENT = "7b0e5c36-1d49-4a3b-9a55-6a1f2b3c4d5e"
OTHER_CLIENT = "9d2f7e48-3f6b-4c5d-8b77-8c3d4e5f6a7b"


@pytest.fixture
def two_tenants(postgres_url, smtp_sink, tmp_path) -> Any:
    """Two workspaces on PostgreSQL, each with rows in every table a send, a suppression, a
    bounce, a webhook-free CX08 record, a transcript and the CRM can fill."""
    runtime = tools.configure(make_settings(postgres_url, smtp_sink, tmp_path))
    ids = []
    for name, client in (("Acme", CLIENT), ("Globex", OTHER_CLIENT)):
        workspace = tools.create_workspace(name, f"news@{name.lower()}.example", "1 Main Street")
        wid = workspace["workspace_id"]
        assert send(workspace, "bob@example.com", client_id=client)["status"] == "sent"
        tools.suppress(wid, "gone@example.com", "unsubscribed")
        tools.update_workspace(wid, rate_limit_per_hour=50, note="more")
        crm = load_crm_rows(
            wid,
            contacts=[{"email": "bob@example.com", "lead_stage": name}],
            organizations=[{"id": client, "name": name}],
            campaigns=[{"name": name, "organization_id": client}],
            synthex_tenant_profiles=[{"brand_rules": {"tone": name}}],
        )
        assert crm["success"], crm
        ids.append(wid)
    yield runtime, ids
    tools.shutdown()


def _count(runtime: Any, table: str, column: str) -> dict[str | None, int]:
    """Rows of `table` by workspace, as the current scope sees them, with no filter of ours."""
    # The names come from the migration's own list, not from input.
    query = text(f"SELECT {column}, count(*) FROM {table} GROUP BY 1")  # noqa: S608
    with runtime.engine.connect() as conn:
        rows = conn.execute(query)
        return {workspace: count for workspace, count in rows}


def test_the_service_connects_as_a_role_row_level_security_applies_to(two_tenants):
    runtime, _ = two_tenants
    with runtime.engine.connect() as conn:
        role = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(role) == (False, False)


def test_a_role_that_skips_row_level_security_is_warned_of_at_start(
    postgres_url, postgres_server_url, smtp_sink, tmp_path, caplog
):
    settings = make_settings(postgres_url, smtp_sink, tmp_path)
    role = make_url(postgres_url).username
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    warning = "row-level security does not apply"
    try:
        with caplog.at_level(logging.WARNING, logger="tools.runtime"):
            tools.configure(settings)
            assert warning not in caplog.text  # the ordinary role the tests run as
            with admin.connect() as connection:
                connection.execute(text(f'ALTER ROLE "{role}" BYPASSRLS'))
            tools.configure(settings)
        assert warning in caplog.text
    finally:
        tools.shutdown()
        admin.dispose()


def test_every_table_holding_a_workspaces_rows_has_a_forced_policy(two_tenants):
    runtime, _ = two_tenants
    tenant_tables = {
        table.name
        for table in Base.metadata.sorted_tables
        if "workspace_id" in table.columns or table.name == "workspaces"
    }
    with runtime.engine.connect() as conn:
        secured = {
            name
            for name, enabled, forced in conn.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
                )
            )
            if enabled and forced
        }
    assert tenant_tables == set(RLS.TENANT_TABLES)
    assert tenant_tables <= secured


def test_a_workspaces_transaction_reads_only_its_own_rows_without_any_filter(two_tenants):
    runtime, (acme, globex) = two_tenants

    filled = []
    for table, column in RLS.TENANT_TABLES.items():
        with all_workspaces():
            everyone = _count(runtime, table, column)
        with workspace_scope(acme):
            seen = _count(runtime, table, column)
        # Exactly Acme's share of what is there: none of Globex's, nor of no one's.
        expected = {acme: everyone[acme]} if acme in everyone else {}
        assert seen == expected, table
        if acme in everyone and globex in everyone:
            filled.append(table)
    assert len(filled) >= 12, filled  # the fixture gave both tenants rows in most tables


def test_the_performance_view_is_filtered_like_its_table(two_tenants):
    runtime, (acme, _) = two_tenants
    with workspace_scope(acme), runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT workspace_id FROM email_agent_performance")).all()
    assert [row.workspace_id for row in rows] == [acme]


def test_a_transaction_without_a_workspace_sees_nothing(two_tenants):
    runtime, _ = two_tenants
    for table, column in RLS.TENANT_TABLES.items():
        assert _count(runtime, table, column) == {}, table


def test_a_workspaces_transaction_cannot_change_anothers_rows(two_tenants):
    runtime, (acme, globex) = two_tenants
    with workspace_scope(acme), runtime.engine.begin() as conn:
        changed = conn.execute(text("UPDATE email_agent_executions SET subject = 'defaced'"))
        removed = conn.execute(text("DELETE FROM email_suppression_list"))
    assert (changed.rowcount, removed.rowcount) == (1, 1)  # its own only

    theirs = tools.get_send_history(globex)["executions"]
    assert [e["subject"] for e in theirs] == [ASSET["subject"]]
    assert tools.is_suppressed(globex, "gone@example.com") is True

    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        workspace_scope(acme),
        runtime.engine.begin() as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO email_suppression_list (id, workspace_id, email, reason, "
                "suppressed_at, created_at) VALUES ('6b1d4c2e-5f3a-4e7b-9c8d-1a2b3c4d5e6f', "
                ":other, 'victim@example.com', 'complained', now(), now())"
            ),
            {"other": globex},
        )
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        workspace_scope(acme),
        runtime.engine.begin() as conn,
    ):
        conn.execute(text("UPDATE contacts SET workspace_id = :other"), {"other": globex})


def test_a_tool_sees_only_its_workspace_even_through_a_query_with_no_filter(two_tenants):
    runtime, (acme, globex) = two_tenants
    unfiltered = text("SELECT DISTINCT workspace_id FROM email_agent_executions")

    @tools.tool_function(WorkspaceArgs)
    def careless(args: Any) -> list[str]:  # a tool whose query forgot its workspace
        with runtime.reader.connect() as conn:
            return list(conn.scalars(unfiltered))

    assert careless(acme) == [acme]
    assert careless(globex) == [globex]


def test_no_text_can_widen_a_workspace_scope():
    # "*" is the setting's value for every workspace: as a workspace id it is refused, and a
    # group-chat request naming it is not a request.
    with pytest.raises(ValueError), workspace_scope("*"):
        pass
    run = run_send_sync(
        {
            "workspace_id": "*",
            "client_id": CLIENT,
            "candidates": [{"circuit_execution_id": "exec_1", "recipient": "bob@example.com"}],
        }
    )
    assert run.stop_reason == "invalid request" and run.transcript_id is None

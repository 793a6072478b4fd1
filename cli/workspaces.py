"""Workspace commands: create one, change its settings, rotate its API key, load its CRM."""

from __future__ import annotations

from pathlib import Path

import click

import tools
from cli.running import UUID, CommandFailed, emit, with_runtime
from tools.crm_loader import TABLES, load_crm_rows, read_crm_file
from tools.errors import ToolFailure

_POSTAL = "The sender's postal address, shown in every email's footer (CAN-SPAM); 5-500 chars."


@click.command("create-workspace")
@click.option("--name", required=True, help="The tenant's name (1-200 characters).")
@click.option("--sender-email", required=True, help="The From address of its emails.")
@click.option("--postal-address", required=True, help=_POSTAL)
@click.option("--sender-name", help="The From name (one line).")
@click.option(
    "--rate-limit",
    type=click.IntRange(1, 1_000_000),
    help="Recipients per hour.  [default: EMAIL_RATE_LIMIT, 300]",
)
@with_runtime()
def create_workspace(
    name: str, sender_email: str, postal_address: str, sender_name: str | None, rate_limit: int
) -> None:
    """Create a tenant; print its id and API key (shown once: only its hash is stored)."""
    result = tools.create_workspace(name, sender_email, postal_address, sender_name, rate_limit)
    emit(result, ok=result["success"])


@click.command("update-workspace")
@click.argument("workspace_id", type=UUID)
@click.option("--sender-email", help="A new From address.")
@click.option("--sender-name", help="A new From name.")
@click.option("--postal-address", help=_POSTAL)
@click.option("--rate-limit", type=click.IntRange(1, 1_000_000), help="Recipients per hour.")
@click.option("--note", help="Why (kept with the change).")
@with_runtime()
def update_workspace(
    workspace_id: str,
    sender_email: str | None,
    sender_name: str | None,
    postal_address: str | None,
    rate_limit: int | None,
    note: str | None,
) -> None:
    """Change a workspace's sender, postal address or hourly limit (each change recorded)."""
    result = tools.update_workspace(
        workspace_id,
        sender_email=sender_email,
        sender_name=sender_name,
        postal_address=postal_address,
        rate_limit_per_hour=rate_limit,
        note=note,
    )
    emit(result, ok=result["success"])


@click.command("rotate-key")
@click.argument("workspace_id", type=UUID)
@with_runtime()
def rotate_key(workspace_id: str) -> None:
    """Issue a new API key for a workspace; the old one stops working at once."""
    result = tools.rotate_api_key(workspace_id)
    emit(result, ok=result["success"])


@click.command("load-crm")
@click.argument("workspace_id", type=UUID)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--table",
    type=click.Choice(list(TABLES)),
    help="The table a .csv file fills.  [default: the file's name, e.g. contacts.csv]",
)
@with_runtime()
def load_crm(workspace_id: str, file: Path, table: str | None) -> None:
    """Load CRM rows (the context CommunicationsDept reads) for a demo or a test.

    FILE is a .json file, an object of tables each a list of rows, e.g.
    {"contacts": [{"id": "c1", "email": "sam@example.com", "lead_stage": "trial"}]},
    or a .csv file of one table with a header row. Tables: contacts, organizations,
    campaigns, synthex_tenant_profiles. Rows are upserted by id, all or nothing: one bad row
    loads none and is named.
    """
    try:
        tables = read_crm_file(file, table)
    except ToolFailure as failure:  # not a file of tables: a bad input, as a malformed JSON is
        raise CommandFailed(f"error: {failure.message}", exit_code=2) from None
    result = load_crm_rows(workspace_id, **tables)
    emit(result, ok=result["success"])

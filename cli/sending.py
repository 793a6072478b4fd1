"""Send commands: record a circuit's result, send, follow a send, ask CX08 about it."""

from __future__ import annotations

from typing import Any

import click

import tools
from cli.running import JSON_FILE, UUID, emit, with_runtime

_ASSET = (
    "CX06's final asset: a JSON object with subject and html_body, and optionally preheader, "
    "text_body, cta_url and tags."
)


@click.command("record-circuit")
@click.option("--workspace-id", type=UUID, required=True)
@click.option(
    "--execution-id",
    required=True,
    help="The circuit execution this result belongs to (the upstream circuits' id: 1-128 "
    "letters, digits, '_', '.', ':' or '-').",
)
@click.option(
    "--circuit",
    required=True,
    help="CX01 .. CX08, or the full name (CX05_BRAND_GUARD).",
)
@click.option("--failed", is_flag=True, help="The circuit failed (default: it passed).")
@click.option("--output-file", type=JSON_FILE, help=f"The circuit's output. For CX06, {_ASSET}")
@with_runtime()
def record_circuit(
    workspace_id: str, execution_id: str, circuit: str, failed: bool, output_file: Any
) -> None:
    """Record one circuit's result for an execution (a send needs CX01-CX06 passed)."""
    result = tools.record_circuit_result(
        workspace_id, execution_id, circuit, not failed, output_file
    )
    emit(result, ok=result["success"])


@click.command()
@click.option("--workspace-id", type=UUID, required=True)
@click.option(
    "--client-id",
    type=UUID,
    required=True,
    help="The client (organization) the email is for; its CRM context is read.",
)
@click.option("--execution-id", required=True, help="The circuit execution whose CX01-CX06 passed.")
@click.option("--recipient", required=True, help="One address (To).")
@click.option(
    "--asset-file",
    type=JSON_FILE,
    help=f"{_ASSET} Sent as it is.  [default: CX06's recorded output]",
)
@click.option("--cc", multiple=True, help="A copy recipient (repeat the option; 50 at most).")
@click.option("--bcc", multiple=True, help="A blind copy recipient (repeat; 50 at most).")
@click.option(
    "--attach",
    multiple=True,
    help="A file to attach: a path inside EMAIL_ATTACHMENTS_DIR (repeat; 10 at most).",
)
@click.option(
    "--scheduled-for",
    metavar="ISO-8601",
    help="Send later: a time with its zone, e.g. 2026-12-24T09:00:00+01:00 (a year ahead "
    "at most); a worker sends it when due.",
)
@with_runtime(sends=True)
def send(
    workspace_id: str,
    client_id: str,
    execution_id: str,
    recipient: str,
    asset_file: Any,
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    attach: tuple[str, ...],
    scheduled_for: str | None,
) -> None:
    """Send one email through the whole pipeline: circuits, recipient, limits, provider."""
    result = tools.send_email(
        workspace_id,
        client_id,
        execution_id,
        recipient,
        asset_file,
        cc=list(cc) or None,
        bcc=list(bcc) or None,
        attachments=list(attach) or None,
        scheduled_for=scheduled_for,
    )
    # A send CX08 rescheduled after a failure is "scheduled" too, but carries the error.
    emit(result, ok=result["status"] in ("sent", "scheduled") and "error" not in result)


@click.command()
@click.argument("email_id", type=UUID)
@with_runtime()
def status(email_id: str) -> None:
    """Show one email's delivery status (EMAIL_ID is what `send` printed)."""
    result = tools.get_email_status(email_id)
    emit(result, ok=result["found"])


@click.command("self-correct")
@click.argument("email_id", type=UUID)
@with_runtime()
def self_correct(email_id: str) -> None:
    """Show CX08's decision for a failed email: reschedule or escalate."""
    result = tools.self_correct(email_id)
    emit(result, ok=result["found"])

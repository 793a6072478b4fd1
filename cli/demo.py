"""`demo` and `chat`: the group chat end to end, on the embedded defaults or with a model."""

from __future__ import annotations

import contextlib
import logging
import socket
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import click

import tools
from agents.messages import Candidate, SendRequest
from cli.running import CommandFailed, verbose, with_runtime
from orchestration.model_config import ModelConfigError, config_path, load_model_client
from orchestration.team import ChatRun, run_send_sync
from orchestration.transcript_view import render
from settings import Settings
from tools.schemas import REQUIRED_CIRCUITS
from tools.send import send_stored_emails

DEMO_ASSET = {
    "subject": "Welcome to Acme, Sam",
    "preheader": "Three things to try in your first week",
    "html_body": (
        "<h1>Welcome aboard!</h1>\n"
        "<p>Thanks for joining Acme. Here are three things to try this week.</p>\n"
        "<ol><li>Set up your profile</li><li>Invite a colleague</li>"
        "<li>Book a walkthrough</li></ol>\n"
    ),
    "text_body": (
        "Welcome aboard!\n\nThanks for joining Acme. Here are three things to try this week:\n"
        "1. Set up your profile\n2. Invite a colleague\n3. Book a walkthrough"
    ),
    "cta_url": "https://acme.example/start",
    "tags": ["onboarding"],
}


@click.command()
@with_runtime(sends=True)
def demo() -> None:
    """The group chat end to end on the embedded defaults (the default command).

    Three sends: one that passes, one that fails circuit validation (CX05 never passed), one
    whose provider is down so that the SelfCorrectionAgent (CX08) acts. The sent email is a
    file in ./outbox/; the database is ./email_agent.db unless EMAIL_LOG_DATABASE_URL says.
    """
    runtime = tools.get_runtime()
    settings = runtime.settings
    print(f"Database:  {settings.database_url_for_display}")
    chain = " -> ".join(runtime.delivery.names)
    if settings.uses_dev_smtp_server:
        chain += " (built-in development server)"
    print(f"Providers: {chain}\n")

    workspace = _new_workspace("Acme Demo", settings)
    workspace_id = workspace["workspace_id"]
    print(f"Workspace {workspace_id} created (sender {workspace['sender_email']}).\n")

    approved = _demo_execution(workspace_id)
    print(f"1. CX01-CX06 passed for {approved}; CommunicationsDept delegates the send.")
    passed = _chat(workspace_id, approved, "sam@example.com")
    if runtime.outbox is not None and passed.outcome and passed.outcome.email_id:
        print(f"   Open it: {runtime.outbox.path_for(passed.outcome.email_id).resolve()}")

    unapproved = _demo_execution(workspace_id, skip="CX05_BRAND_GUARD")
    print(f"\n2. CX05 (brand guard) never passed for {unapproved}.")
    blocked = _chat(workspace_id, unapproved, "sam@example.com")

    print("\n3. The provider is down (SMTP pointed at a closed port, no retries).")
    # The failure is the demonstration, told by the chat: its log lines only with -v.
    with contextlib.nullcontext() if verbose() else _silenced("tools"):
        failed, retried = _outage(settings, workspace_id)

    ok = passed.sent and not blocked.sent and blocked.verdict is not None
    ok = ok and failed.correction is not None and failed.correction.action == "reschedule"
    ok = ok and retried == "delivery_failed"
    print(
        f"\nEach run's transcript is stored in agent_transcripts. Demo {'ok' if ok else 'FAILED'}."
    )
    print(
        "Look next: `python main.py serve`, then open http://127.0.0.1:8080/console/ and sign "
        f"in with this workspace's API key,\n  {workspace['api_key']}\n"
        "  (its executions, the message as sent, CX08's decisions and the dev inbox); "
        "`-v` shows the framework's events."
    )
    if not ok:
        click.get_current_context().exit(1)


@click.command()
@click.option(
    "--model-config",
    type=click.Path(dir_okay=False),
    help="The OAI_CONFIG_LIST file: a JSON list of entries like "
    '{"model": "gpt-4o-mini", "api_key": "...", "base_url": "https://api.openai.com/v1"}. '
    "Default: $OAI_CONFIG_LIST, then OAI_CONFIG_LIST beside main.py.",
)
@click.option("--model", help="Use this model's entry.  [default: the first]")
@click.option("--to", default="sam@example.com", help="Recipient of the demo send.")
@with_runtime(sends=True)
def chat(model_config: str | None, model: str | None, to: str) -> None:
    """One delegated send where CommunicationsDept asks a model (an OpenAI-compatible API)."""
    try:
        client = load_model_client(model_config, model)
    except ModelConfigError as error:
        raise CommandFailed(f"error: {error}", exit_code=2) from None
    if client is None:
        raise CommandFailed(
            f"error: no model config at {config_path(model_config)}; write one there, or "
            'pass --model-config PATH: a JSON list like [{"model": "gpt-4o-mini", "api_key": '
            '"...", "base_url": "https://api.openai.com/v1"}] (see OAI_CONFIG_LIST.example)',
            exit_code=2,
        )
    workspace_id = _new_workspace("Acme Chat", tools.get_runtime().settings)["workspace_id"]
    run = _chat(workspace_id, _demo_execution(workspace_id), to, client)
    if not run.sent:
        click.get_current_context().exit(1)


def _new_workspace(name: str, settings: Settings) -> dict[str, Any]:
    workspace = tools.create_workspace(
        name,
        settings.default_sender,
        "Acme Inc.\n1 Demo Street\nSpringfield, IL 62701",
        sender_name="Acme",
    )
    if not workspace["success"]:  # DEFAULT_SENDER is no address, say
        error = workspace["error"]
        raise CommandFailed(f"error: cannot create the workspace: {error['message']}")
    return workspace


@contextlib.contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _outage(settings: Settings, workspace_id: str) -> tuple[ChatRun, str | None]:
    """A send whose provider is down: CX08 reschedules it; its retry, made due at once, fails
    again and is escalated. So the demo leaves nothing due for a later worker to send."""
    outage = settings.replace(
        smtp_server="127.0.0.1",
        smtp_port=_closed_port(),
        sendgrid_api_key=None,
        resend_api_key=None,
        max_retries=0,
        reschedule_delay_seconds=0,
    )
    tools.configure(outage)
    try:
        failed = _chat(workspace_id, _demo_execution(workspace_id), "alex@example.com")
        email_id = failed.outcome.email_id if failed.outcome else None
        retried = send_stored_emails([email_id])[email_id] if email_id else None
        if retried is not None:
            final = tools.self_correct(email_id)
            print(f"   The worker's retry: {retried}; CX08 {final['action']}: {final['reason']}")
    finally:
        tools.configure(settings)
    return failed, retried


def _demo_execution(workspace_id: str, *, skip: str | None = None) -> str:
    """A circuit execution with CX01-CX06 recorded as passed (but `skip`); CX06 output the
    demo's asset."""
    execution_id = f"demo_{uuid.uuid4().hex[:12]}"
    for circuit in REQUIRED_CIRCUITS:
        if circuit == skip:
            continue
        output = DEMO_ASSET if circuit == "CX06_GENERATION_EXECUTION" else None
        result = tools.record_circuit_result(workspace_id, execution_id, circuit, True, output)
        if not result["success"]:
            raise CommandFailed(f"error: recording {circuit} failed: {result['error']['message']}")
    return execution_id


def _chat(
    workspace_id: str, execution_id: str, recipient: str, model_client: Any = None
) -> ChatRun:
    request = SendRequest(
        workspace_id=workspace_id,
        client_id=str(uuid.uuid4()),
        candidates=[Candidate(circuit_execution_id=execution_id, recipient=recipient)],
    )
    run = run_send_sync(request, model_client)
    print(textwrap.indent(render(run.messages), "   "))
    print(f"   [{run.stop_reason}{'; ' + run.error if run.error else ''}]")
    return run


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

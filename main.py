"""Command line for the circuit-bound email service.

`python main.py` with no arguments runs the group chat end to end on the embedded defaults
(SQLite file, built-in development SMTP server writing to ./outbox/). The sub-commands operate
the service: create a workspace, record circuit results, send, show status, run the worker,
`chat` with a model from OAI_CONFIG_LIST, rotate a workspace's API key, and `serve` the HTTP API.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import socket
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tools
from agents.messages import Candidate, SendRequest
from log_format import configure_logging
from orchestration.model_config import ModelConfigError, config_path, load_model_client
from orchestration.signals import handling_signals
from orchestration.team import ChatRun, run_send_sync
from orchestration.transcript_view import render
from settings import Settings, SettingsError, load_settings
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


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _approve(workspace_id: str, execution_id: str, *, skip: str | None = None) -> None:
    for circuit in REQUIRED_CIRCUITS:
        if circuit == skip:
            continue
        output = DEMO_ASSET if circuit == "CX06_GENERATION_EXECUTION" else None
        result = tools.record_circuit_result(workspace_id, execution_id, circuit, True, output)
        if not result["success"]:
            raise SystemExit(f"recording {circuit} failed: {result['error']['message']}")


def run_demo(args: argparse.Namespace) -> int:
    """The group chat on the embedded defaults: a send that passes, one that fails circuit
    validation, one whose provider fails so that the SelfCorrectionAgent acts."""
    runtime = tools.get_runtime()
    settings = runtime.settings
    print(f"Database:  {settings.database_url_for_display}")
    chain = " -> ".join(runtime.delivery.names)
    if settings.uses_dev_smtp_server:
        chain += " (built-in development server)"
    print(f"Providers: {chain}\n")

    workspace = tools.create_workspace(
        "Acme Demo",
        settings.default_sender,
        "Acme Inc.\n1 Demo Street\nSpringfield, IL 62701",
        sender_name="Acme",
    )
    if not workspace["success"]:
        print(f"Could not create the demo workspace: {workspace['error']['message']}")
        return 1
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
    with contextlib.nullcontext() if args.verbose else _silenced("tools"):
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
    return 0 if ok else 1


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
    outage = dataclasses.replace(
        settings,
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
    execution_id = f"demo_{uuid.uuid4().hex[:12]}"
    _approve(workspace_id, execution_id, skip=skip)
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


def run_chat(args: argparse.Namespace) -> int:
    """One delegated send where CommunicationsDept asks the configured model."""
    try:
        client = load_model_client(args.model_config, args.model)
    except ModelConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if client is None:
        print(
            f"error: no model config at {config_path(args.model_config)}; write one there, or "
            'pass --model-config PATH: a JSON list like [{"model": "gpt-4o-mini", "api_key": '
            '"...", "base_url": "https://api.openai.com/v1"}] (see OAI_CONFIG_LIST.example)',
            file=sys.stderr,
        )
        return 2
    workspace = tools.create_workspace(
        "Acme Chat", tools.get_runtime().settings.default_sender, "Acme Inc.\n1 Demo Street"
    )
    run = _chat(
        workspace["workspace_id"], _demo_execution(workspace["workspace_id"]), args.to, client
    )
    return 0 if run.sent else 1


def run_create_workspace(args: argparse.Namespace) -> int:
    result = tools.create_workspace(
        args.name, args.sender_email, args.postal_address, args.sender_name, args.rate_limit
    )
    _print(result)
    return 0 if result["success"] else 1


def run_record_circuit(args: argparse.Namespace) -> int:
    output = json.loads(Path(args.output_file).read_text()) if args.output_file else None
    result = tools.record_circuit_result(
        args.workspace_id, args.execution_id, args.circuit, not args.failed, output
    )
    _print(result)
    return 0 if result["success"] else 1


def run_send(args: argparse.Namespace) -> int:
    asset = json.loads(Path(args.asset_file).read_text()) if args.asset_file else None
    result = tools.send_email(
        args.workspace_id,
        args.client_id,
        args.execution_id,
        args.recipient,
        asset,
        cc=args.cc or None,
        bcc=args.bcc or None,
        attachments=args.attach or None,
        scheduled_for=args.scheduled_for,
    )
    _print(result)
    # A send CX08 rescheduled after a failure is "scheduled" too, but carries the error.
    return 0 if result["status"] in ("sent", "scheduled") and "error" not in result else 1


def run_status(args: argparse.Namespace) -> int:
    result = tools.get_email_status(args.email_id)
    _print(result)
    return 0 if result["found"] else 1


def run_self_correct(args: argparse.Namespace) -> int:
    result = tools.self_correct(args.email_id)
    _print(result)
    return 0 if result["found"] else 1


def run_worker(args: argparse.Namespace) -> int:
    settings = tools.get_runtime().settings
    if settings.celery_broker_url is not None:
        return _celery(settings, ["worker", f"--concurrency={args.concurrency}"])
    log = logging.getLogger("worker")
    stop = threading.Event()
    with _stop_on_signals(stop):
        while True:
            # A failed pass (the database away, a deadlock victim) is logged and tried again at
            # the next poll: one bad moment must not stop scheduled sends for good.
            try:
                queued = tools.send_queued_emails(limit=args.batch, stop=stop)
                if queued["due"]:
                    log.info("queued sends processed", extra=queued)
                    print(json.dumps({"queued": queued}))
                counts = tools.send_due_emails(limit=args.batch, stop=stop)
                if counts["due"]:
                    log.info("scheduled sends processed", extra=counts)
                    print(json.dumps(counts))
                folded = tools.fold_waiting_events()  # webhook events that overtook their send
                if folded:
                    print(json.dumps({"events_folded": folded}))
                stalled = tools.escalate_stalled_sends()  # outlived the process delivering them
                if stalled:
                    log.warning("stalled sends escalated", extra={"escalated": stalled})
                    print(json.dumps({"stalled_sends_escalated": stalled}))
            except Exception:
                log.exception("worker pass failed; retrying at the next poll")
                if args.once:
                    return 1
            if args.once or stop.wait(args.interval):
                return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (a process manager's stop) and Ctrl-C set `stop` instead of killing the worker.

    The send in hand then finishes and is recorded; the emails still due stay scheduled for the
    next worker. Killed during a delivery instead, a send would stay `sending` until the
    stalled-send sweep escalates it as unconfirmed. A second signal stops at once.
    """

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger("worker").info("stopping after the send in hand")
        stop.set()

    with handling_signals(request_stop, signal.SIGTERM, signal.SIGINT):
        yield


def run_beat(args: argparse.Namespace) -> int:
    settings = tools.get_runtime().settings
    if settings.celery_broker_url is None:
        print("error: beat needs CELERY_BROKER_URL (without one, `worker` does it all)")
        return 2
    return _celery(settings, ["beat", f"--schedule={args.schedule}"])


def _celery(settings: Settings, argv: list[str]) -> int:
    """Run a Celery worker or beat with the service's settings (`orchestration/celery_app.py`).
    Its processes build their own runtime: this one's connections are closed first."""
    from orchestration.celery_app import create_celery

    tools.shutdown()
    create_celery(settings).start([*argv, f"--loglevel={settings.log_level}"])
    return 0


def run_rotate_key(args: argparse.Namespace) -> int:
    result = tools.rotate_api_key(args.workspace_id)
    _print(result)
    return 0 if result["success"] else 1


def run_update_workspace(args: argparse.Namespace) -> int:
    result = tools.update_workspace(
        args.workspace_id,
        sender_email=args.sender_email,
        sender_name=args.sender_name,
        postal_address=args.postal_address,
        rate_limit_per_hour=args.rate_limit,
        note=args.note,
    )
    _print(result)
    return 0 if result["success"] else 1


def run_load_crm(args: argparse.Namespace) -> int:
    from tools.crm_loader import load_crm_rows, read_crm_file
    from tools.errors import ToolFailure

    try:
        tables = read_crm_file(Path(args.file), args.table)
    except ToolFailure as failure:
        print(failure.message, file=sys.stderr)
        return 1
    result = load_crm_rows(args.workspace_id, **tables)
    _print(result)
    return 0 if result["success"] else 1


def run_serve(args: argparse.Namespace) -> int:
    from api import create_app
    from api.server import make_server, serve_until_stopped

    settings = tools.get_runtime().settings
    # Where it matters: a real provider's recipients get links that must be https (mail
    # clients show one-click unsubscribe only then); the development server's get none.
    if not settings.uses_dev_smtp_server and not settings.public_base_url.startswith("https://"):
        logging.getLogger("main").warning(
            "EMAIL_PUBLIC_BASE_URL is not https; mail clients offer one-click unsubscribe "
            "only for https links"
        )
    server = make_server(create_app(), args.host, args.port, threads=args.threads)
    base = f"http://{args.host}:{server.effective_port}"
    print(f"Serving the API on {base} (interactive docs {base}/docs/, console {base}/console/)")
    serve_until_stopped(server)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Circuit-bound email execution. With no command, runs the demonstration.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log INFO lines, the frameworks' (AutoGen, aiosmtpd, Alembic) included",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the group chat end to end on the embedded defaults (the default)"
    )
    demo.set_defaults(handler=run_demo)

    chat = commands.add_parser("chat", help="one delegated send with a model (OAI_CONFIG_LIST)")
    chat.add_argument(
        "--model-config",
        help="path of the OAI_CONFIG_LIST file (default: env, then beside main.py)",
    )
    chat.add_argument("--model", help="use the entry for this model (default: the first)")
    chat.add_argument("--to", default="sam@example.com", help="recipient of the demo send")
    chat.set_defaults(handler=run_chat)

    create = commands.add_parser("create-workspace", help="create a tenant and print its API key")
    create.add_argument("--name", required=True)
    create.add_argument("--sender-email", required=True)
    create.add_argument("--postal-address", required=True, help="shown in every email's footer")
    create.add_argument("--sender-name")
    create.add_argument("--rate-limit", type=int, help="sends per hour (default EMAIL_RATE_LIMIT)")
    create.set_defaults(handler=run_create_workspace)

    rotate = commands.add_parser(
        "rotate-key", help="issue a new API key for a workspace (the old one stops working)"
    )
    rotate.add_argument("workspace_id")
    rotate.set_defaults(handler=run_rotate_key)

    update = commands.add_parser(
        "update-workspace",
        help="change a workspace's sender, postal address or hourly limit (recorded)",
    )
    update.add_argument("workspace_id")
    update.add_argument("--sender-email")
    update.add_argument("--sender-name")
    update.add_argument("--postal-address", help="shown in every email's footer")
    update.add_argument("--rate-limit", type=int, help="recipients per hour")
    update.add_argument("--note", help="why (kept with the change)")
    update.set_defaults(handler=run_update_workspace)

    crm = commands.add_parser(
        "load-crm",
        help="load CRM rows (contacts, organizations, campaigns, brand rules) for a demo or a "
        "test; upserted by id, all or nothing",
    )
    crm.add_argument("workspace_id")
    crm.add_argument(
        "file",
        help="a .json file (an object of tables, each a list of rows) or a .csv file (one table)",
    )
    crm.add_argument(
        "--table",
        choices=["contacts", "organizations", "campaigns", "synthex_tenant_profiles"],
        help="the table a .csv file fills (default: the file's name)",
    )
    crm.set_defaults(handler=run_load_crm)

    serve = commands.add_parser("serve", help="run the HTTP API on waitress")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=int, default=8, help="requests served at once")
    serve.set_defaults(handler=run_serve)

    record = commands.add_parser("record-circuit", help="log one circuit result")
    record.add_argument("--workspace-id", required=True)
    record.add_argument("--execution-id", required=True)
    record.add_argument("--circuit", required=True, help="CX01..CX08 or the full name")
    record.add_argument("--failed", action="store_true", help="the circuit failed")
    record.add_argument("--output-file", help="JSON file: CX06's final asset")
    record.set_defaults(handler=run_record_circuit)

    send = commands.add_parser("send", help="send one email through the full pipeline")
    send.add_argument("--workspace-id", required=True)
    send.add_argument("--client-id", required=True)
    send.add_argument("--execution-id", required=True)
    send.add_argument("--recipient", required=True)
    send.add_argument("--asset-file", help="JSON final asset (default: CX06's logged output)")
    send.add_argument("--cc", action="append")
    send.add_argument("--bcc", action="append")
    send.add_argument("--attach", action="append", help="path inside EMAIL_ATTACHMENTS_DIR")
    send.add_argument("--scheduled-for", help="ISO-8601 time with a zone")
    send.set_defaults(handler=run_send)

    status = commands.add_parser("status", help="show one email's delivery status")
    status.add_argument("email_id")
    status.set_defaults(handler=run_status)

    correct = commands.add_parser(
        "self-correct", help="show CX08's decision for a failed email (reschedule or escalate)"
    )
    correct.add_argument("email_id")
    correct.set_defaults(handler=run_self_correct)

    worker = commands.add_parser(
        "worker",
        help="send queued emails, and scheduled ones when due; fold webhook events that arrived "
        "before their send; escalate sends whose process stopped during delivery",
    )
    worker.add_argument("--once", action="store_true", help="process what is due, then exit")
    worker.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    worker.add_argument("--batch", type=int, default=100, help="emails per poll")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="with CELERY_BROKER_URL: Celery worker processes (default 4)",
    )
    worker.set_defaults(handler=run_worker)

    beat = commands.add_parser(
        "beat", help="with CELERY_BROKER_URL: run the periodic tasks (dispatch, sweep, fold)"
    )
    beat.add_argument(
        "--schedule", default="celerybeat-schedule", help="beat's state file (celerybeat-schedule)"
    )
    beat.set_defaults(handler=run_beat)
    return parser


# AutoGen logs every message it routes at INFO (about 300 lines for the demo); aiosmtpd every
# SMTP command; Alembic every migration step.
_FRAMEWORK_LOGGERS = ("autogen_core", "autogen_agentchat", "autogen_ext", "mail.log", "alembic")


def _configure_logging(settings: Settings, *, verbose: bool, demo: bool) -> None:
    """The service's own lines at EMAIL_AGENT_LOG_LEVEL; the frameworks' only with `-v` or at
    DEBUG. The demo prints its own story: its log shows warnings and worse unless `-v`."""
    level = settings.log_level
    if demo and not verbose and level == "INFO":
        level = "WARNING"
    configure_logging(level, settings.log_format)
    if not verbose and settings.log_level != "DEBUG":
        for noisy in _FRAMEWORK_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    _configure_logging(settings, verbose=args.verbose, demo=args.command in (None, "demo"))
    try:
        tools.configure(settings)
    except SettingsError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    try:
        return args.handler(args) if args.command else run_demo(args)
    except KeyboardInterrupt:
        return 130
    finally:
        tools.shutdown()


if __name__ == "__main__":
    sys.exit(main())

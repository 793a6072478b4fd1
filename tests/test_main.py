"""`python main.py` from a clean directory: the demonstration on the embedded defaults."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx

import tools
from tests.builders import approve
from tests.processes import child_environment
from tests.smtp_sink import HeldData

REPO = Path(__file__).resolve().parent.parent


def _environment(**env: str) -> dict[str, str]:
    """This process's environment without the service's settings, then `env`."""
    ours = ("SMTP_", "EMAIL_", "SENDGRID_", "RESEND_", "CELERY_")
    outer = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {**outer, **env}


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=cwd,
        env=_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _create_workspace(cwd: Path) -> dict:
    """`main.py create-workspace` for a tenant "Acme" in `cwd`: what it printed."""
    created = _run(
        [
            *("create-workspace", "--name", "Acme", "--sender-email", "news@acme.example"),
            *("--postal-address", "1 Main Street, Springfield"),
        ],
        cwd,
    )
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)


def _serve(cwd: Path, port: int = 0, **env: str) -> subprocess.Popen[str]:
    """`main.py serve` on `port` (0: a free one), in `cwd`, on the embedded defaults and `env`."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "serve", "--port", str(port)],
        cwd=cwd,
        env=_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background ignores SIGINT, and the server would inherit
        # that; the stop must work however the tests were started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_demo_runs_the_group_chat_pass_circuit_failure_and_self_correction(tmp_path):
    result = _run([], tmp_path)

    assert result.returncode == 0, result.stderr
    # The conversation, not the machinery: no framework event, no log line at all.
    assert result.stderr == ""
    out = result.stdout
    assert "Demo ok." in out
    assert "autogen" not in out
    assert re.search(r"/console/ and sign in with this workspace's API key,\n  ek_\S+", out)
    first, second, third = re.split(r"\n\d\. ", out)[1:4]
    assert "EmailAgent: sent: Email sent via smtp" in first
    # A tool's line shows what it said, not the ids the reader knows (cut before, it was not).
    assert 'EmailAgent <- send_email: {"status": "sent", "message": "Email sent via smtp"' in first
    assert '"all_required_passed": false' in second
    assert "NOT approved: missing CX05_BRAND_GUARD" in second and "EmailAgent" not in second
    assert "EmailAgent: scheduled [all_providers_failed]" in third
    assert "SelfCorrectionAgent: CX08 reschedule" in third
    assert "The worker's retry: delivery_failed; CX08 escalate" in third
    match = re.search(r"Open it: (\S+\.eml)", out)
    assert match, out
    eml = Path(match.group(1))
    assert eml.parent == tmp_path / "outbox"
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Welcome to Acme, Sam"
    assert message["To"] == "sam@example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1  # the other two were not sent
    assert (tmp_path / "email_agent.db").exists()

    with contextlib.closing(sqlite3.connect(tmp_path / "email_agent.db")) as db:
        statuses = dict(
            db.execute("SELECT status, count(*) FROM email_agent_executions GROUP BY 1")
        )
    assert statuses == {"sent": 1, "escalated": 1}  # nothing scheduled for a later worker
    worker = _run(["worker", "--once"], tmp_path)  # the demo left nothing due
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout == ""  # it prints what it sent, folded or escalated
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1

    again = _run([], tmp_path)  # a second run on the same database works too
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_verbose_brings_the_frameworks_events_back(tmp_path):
    result = _run(["-v"], tmp_path)

    assert result.returncode == 0, result.stderr
    assert "INFO autogen_core" in result.stderr
    assert "INFO tools.send.deliver: email sent" in result.stderr


def test_the_https_warning_comes_only_where_it_matters(tmp_path):
    local = _run(["status", "550e8400-e29b-41d4-a716-446655440000"], tmp_path)
    assert "https" not in local.stderr, local.stderr

    server = _serve(tmp_path, SMTP_SERVER="127.0.0.1", SMTP_PORT="2525")  # real, never used
    assert server.stdout is not None
    assert "Serving the API" in server.stdout.readline()
    server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=60)
    assert stderr.count("EMAIL_PUBLIC_BASE_URL is not https") == 1, stderr


def test_serve_on_another_port_than_the_links_says_so(tmp_path):
    def warnings(server: subprocess.Popen[str]) -> str:
        assert server.stdout is not None
        port = _port(server)
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
        return stderr.replace(str(port), "PORT")

    elsewhere = warnings(_serve(tmp_path))  # a free port, not the default URL's 8080
    port = _closed_port()
    here = warnings(_serve(tmp_path, port, EMAIL_PUBLIC_BASE_URL=f"http://localhost:{port}"))

    assert "set EMAIL_PUBLIC_BASE_URL=http://localhost:PORT" in elsewhere, elsewhere
    assert "EMAIL_PUBLIC_BASE_URL" not in here, here


def test_subcommands_drive_a_send_and_show_its_status(tmp_path):
    created = _run(
        [
            "create-workspace",
            "--name",
            "Cli",
            "--sender-email",
            "cli@cli.example",
            "--postal-address",
            "1 Cli Road, Shell",
        ],
        tmp_path,
    )
    assert created.returncode == 0, created.stderr
    workspace_id = json.loads(created.stdout)["workspace_id"]
    asset = tmp_path / "asset.json"
    asset.write_text(json.dumps({"subject": "From the CLI", "html_body": "<p>Hi</p>"}))
    for circuit in ("CX01", "CX02", "CX03", "CX04", "CX05", "CX06"):
        args = ["record-circuit", "--workspace-id", workspace_id, "--execution-id", "cli_1"]
        args += ["--circuit", circuit]
        if circuit == "CX06":
            args += ["--output-file", str(asset)]
        assert _run(args, tmp_path).returncode == 0

    sent = _run(
        [
            "send",
            "--workspace-id",
            workspace_id,
            "--execution-id",
            "cli_1",
            "--client-id",
            "550e8400-e29b-41d4-a716-446655440000",
            "--recipient",
            "pat@example.com",
        ],
        tmp_path,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    email_id = json.loads(sent.stdout)["email_id"]
    status = _run(["status", email_id], tmp_path)
    assert status.returncode == 0
    assert json.loads(status.stdout)["status"] == "sent"
    assert (tmp_path / "outbox" / f"{email_id}.eml").exists()

    correction = _run(["self-correct", email_id], tmp_path)
    assert correction.returncode == 0
    assert json.loads(correction.stdout)["action"] == "none"

    missing = _run(["status", "550e8400-e29b-41d4-a716-446655440000"], tmp_path)
    assert missing.returncode == 1


def test_bad_configuration_is_a_clear_error_not_a_traceback(tmp_path):
    result = _run([], tmp_path, EMAIL_RATE_LIMIT="lots")
    assert result.returncode == 2
    assert "EMAIL_RATE_LIMIT must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dotenv_file_is_read_under_the_environment_and_checked_like_it(tmp_path):
    (tmp_path / ".env").write_text("# local settings\nEMAIL_RATE_LIMIT=lots\n")
    from_file = _run([], tmp_path)
    overridden = _run(
        ["status", "550e8400-e29b-41d4-a716-446655440000"], tmp_path, EMAIL_RATE_LIMIT="7"
    )

    assert from_file.returncode == 2
    assert from_file.stderr.strip() == "Configuration error: EMAIL_RATE_LIMIT must be an integer"
    assert overridden.returncode == 1, overridden.stderr  # the environment's 7 won: it ran
    assert overridden.stderr == "error: no such email (not_found)\n"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_expected_failure_is_one_line_and_a_non_zero_exit(tmp_path):
    (tmp_path / "broken.json").write_text('{"subject": "Hi",')
    unknown = "550e8400-e29b-41d4-a716-446655440000"
    record = ["record-circuit", "--workspace-id", unknown, "--execution-id", "e1"]
    send = [
        *("send", "--workspace-id", unknown, "--client-id", unknown),
        *("--execution-id", "e1", "--recipient", "pat@example.com"),
    ]
    away = f"postgresql+psycopg://app:hunter2@127.0.0.1:{_closed_port()}/mail"
    (tmp_path / "models.json").write_text('[{"model": "gpt-4o-mini", "api_key": "k"}]')
    newer = _database_of_a_newer_release(tmp_path)
    failures = {
        "missing file": (_run([*send, "--asset-file", "absent.json"], tmp_path), 2),
        "malformed JSON": (
            _run([*record, "--circuit", "CX06", "--output-file", "broken.json"], tmp_path),
            2,
        ),
        "not a UUID": (_run(["status", "42"], tmp_path), 2),
        "unknown option": (_run(["status", "--colour", unknown], tmp_path), 2),
        "bad setting": (_run(["status", unknown], tmp_path, EMAIL_TIMEOUT="soon"), 2),
        "database away": (_run(["status", unknown], tmp_path, EMAIL_LOG_DATABASE_URL=away), 1),
        "database folder is a file": (
            _run(
                ["status", unknown],
                tmp_path,
                EMAIL_LOG_DATABASE_URL=f"sqlite:///{tmp_path / 'broken.json' / 'mail.db'}",
            ),
            1,
        ),
        "not a database URL": (
            _run(["status", unknown], tmp_path, EMAIL_LOG_DATABASE_URL="email.db"),
            2,
        ),
        "no driver": (
            _run(["status", unknown], tmp_path, EMAIL_LOG_DATABASE_URL="mysql://app:hunter2@db/m"),
            1,
        ),
        "schema of a newer release": (
            _run(["status", unknown], tmp_path, EMAIL_LOG_DATABASE_URL=newer),
            1,
        ),
        "outbox is a file": (_run(send, tmp_path, EMAIL_OUTBOX_DIR="broken.json"), 1),
        "chat with no usable sender": (
            _run(["chat", "--model-config", "models.json"], tmp_path, DEFAULT_SENDER="acme"),
            1,
        ),
        "unknown id": (_run(["status", unknown], tmp_path), 1),
        "unknown workspace": (_run(["rotate-key", unknown], tmp_path), 1),
        "beat without a broker": (_run(["beat"], tmp_path), 2),
    }
    for case, (result, code) in failures.items():
        assert result.returncode == code, (case, result.stderr)
        assert result.stdout == "", (case, result.stdout)
        assert len(result.stderr.splitlines()) == 1, (case, result.stderr)
    lines = {case: result.stderr for case, (result, _) in failures.items()}
    assert "cannot read absent.json: No such file" in lines["missing file"]
    assert "broken.json is not JSON" in lines["malformed JSON"]
    assert "'42' is not a UUID" in lines["not a UUID"]
    assert "--colour" in lines["unknown option"]
    assert "(see 'main.py status --help')" in lines["unknown option"]
    assert lines["bad setting"] == "Configuration error: EMAIL_TIMEOUT must be a number\n"
    assert lines["database away"].startswith("error: cannot use the database postgresql")
    assert "hunter2" not in lines["database away"] and "***" in lines["database away"]
    assert str(tmp_path / "broken.json") in lines["database folder is a file"]
    assert lines["not a database URL"].startswith(
        "Configuration error: EMAIL_LOG_DATABASE_URL must be a database URL"
    )
    assert "no driver for mysql is installed" in lines["no driver"]
    assert "hunter2" not in lines["no driver"]
    assert "Can't locate revision identified by '9999'" in lines["schema of a newer release"]
    assert lines["outbox is a file"] == f"error: File exists: {Path('broken.json')}\n"
    assert "cannot create the workspace: sender_email" in lines["chat with no usable sender"]
    assert lines["unknown id"] == "error: no such email (not_found)\n"
    assert "(unknown_workspace)" in lines["unknown workspace"]
    assert "CELERY_BROKER_URL" in lines["beat without a broker"]


def _database_of_a_newer_release(folder: Path) -> str:
    """A SQLite database whose schema a later release migrated (a revision this one lacks)."""
    url = f"sqlite:///{folder / 'newer.db'}"
    created = _run(
        ["status", "550e8400-e29b-41d4-a716-446655440000"],
        folder,
        **{"EMAIL_LOG_DATABASE_URL": url},
    )
    assert created.returncode == 1, created.stderr  # created, then found no such email
    with sqlite3.connect(folder / "newer.db") as database:
        database.execute("UPDATE alembic_version SET version_num = '9999'")
    return url


def test_serve_that_cannot_listen_says_why_in_a_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        in_use = _run(["serve", "--port", port], tmp_path)
    no_such_host = _run(["serve", "--host", "nosuchhost.invalid", "--port", "0"], tmp_path)

    for result in (in_use, no_such_host):
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    # A service logs as it starts (the development server's port); the failure is the last line.
    assert in_use.stderr.splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: " + (
        "Address already in use"
    )
    assert no_such_host.stderr.splitlines()[-1] == (
        "error: cannot listen on nosuchhost.invalid:0: no such address"
    )


def test_each_commands_help_gives_the_defaults_and_the_form_of_its_inputs(tmp_path):
    send = _run(["send", "--help"], tmp_path)
    record = _run(["record-circuit", "--help"], tmp_path)
    worker = _run(["worker", "--help"], tmp_path)

    assert send.returncode == 0 and record.returncode == 0 and worker.returncode == 0
    assert "--client-id UUID" in send.stdout and "--asset-file FILE.json" in send.stdout
    for field in ("subject", "html_body", "preheader", "text_body", "cta_url", "tags"):
        assert field in send.stdout and field in record.stdout
    assert "2026-12-24T09:00:00+01:00" in send.stdout  # a time carries its zone
    assert "1-128" in record.stdout  # what an execution id may be
    assert "[default: 5.0; x>=0]" in worker.stdout and "[default: 100; x>=1]" in worker.stdout


def test_the_commands_run_the_flask_way_too(tmp_path):
    workspace = _create_workspace(tmp_path)

    def flask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", str(REPO / "main.py"), *args],
            cwd=tmp_path,
            env=_environment(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    rotated = flask("rotate-key", workspace["workspace_id"])
    unknown = flask("status", "550e8400-e29b-41d4-a716-446655440000")

    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["api_key"] != workspace["api_key"]
    assert unknown.returncode == 1  # a failure is a failure under flask too
    assert unknown.stderr == "error: no such email (not_found)\n"
    # The app is built before any command runs: settings it cannot use are one line there too.
    for args in (("status", "550e8400-e29b-41d4-a716-446655440000"), ("--help",)):
        broken = flask(*args, EMAIL_RATE_LIMIT="0")
        assert broken.returncode == 2, broken.stderr
        assert broken.stderr == "Configuration error: EMAIL_RATE_LIMIT must be at least 1\n"


def test_help_lists_the_commands(tmp_path):
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0
    commands = ("demo", "chat", "send", "status", "self-correct", "worker", "create-workspace")
    for command in (*commands, "serve", "rotate-key"):
        assert command in result.stdout


def test_chat_uses_the_model_from_an_oai_config_list(tmp_path):
    import json

    from tests.fake_openai import API_KEY, FakeOpenAI

    fake = FakeOpenAI().start()
    try:
        config = tmp_path / "models.json"
        entry = {"model": "local-model", "api_key": API_KEY, "base_url": f"{fake.url}/v1"}
        config.write_text(json.dumps([entry]))
        result = _run(["chat", "--model-config", str(config), "--to", "kim@example.com"], tmp_path)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "delegates" in result.stdout and "[model]" in result.stdout
        assert "EmailAgent: sent" in result.stdout
        assert len(fake.requests) == 1
        assert API_KEY not in result.stdout + result.stderr
    finally:
        fake.stop()

    missing = _run(["chat", "--model-config", str(tmp_path / "absent")], tmp_path)
    assert missing.returncode == 2 and "no model config" in missing.stderr
    assert "--model-config PATH" in missing.stderr and '"base_url"' in missing.stderr


def test_serve_runs_the_api_on_waitress_and_rotate_key_replaces_the_key(tmp_path):
    workspace = _create_workspace(tmp_path)
    server = _serve(tmp_path)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + server.stderr.read() if server.stderr else line
        base = f"http://127.0.0.1:{match.group(1)}"
        auth = {"Authorization": f"Bearer {workspace['api_key']}"}

        served = httpx.get(f"{base}/api/email/providers", headers=auth, timeout=10)
        assert served.status_code == 200 and served.headers["server"] == "email-service"
        assert httpx.get(f"{base}/openapi.json", timeout=10).json()["openapi"].startswith("3.")

        rotated = _run(["rotate-key", workspace["workspace_id"]], tmp_path)
        assert rotated.returncode == 0, rotated.stderr
        new_key = json.loads(rotated.stdout)["api_key"]
        assert httpx.get(f"{base}/api/email/providers", headers=auth, timeout=10).status_code == 401
        fresh = {"Authorization": f"Bearer {new_key}"}
        assert (
            httpx.get(f"{base}/api/email/providers", headers=fresh, timeout=10).status_code == 200
        )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()  # not left running; the test still fails on the timeout
            server.wait()
            raise
    assert _run(["rotate-key", "not-a-workspace"], tmp_path).returncode == 2  # not a UUID


def _serve_with_a_send_in_hand(settings, workspace, smtp_sink):
    """`main.py serve`, a send posted to it and held at DATA: (server, port, answers, held)."""
    asset = {"subject": "Plain hello", "html_body": "<p>Hello there</p>"}
    execution_id = approve(workspace["workspace_id"], asset=asset)
    held = HeldData(smtp_sink)
    server = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "serve", "--port", "0"],
        env=child_environment(settings, smtp_sink),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = _port(server)
    answers: list[httpx.Response | Exception] = []
    request = threading.Thread(
        target=lambda: answers.append(_post_send(port, workspace["api_key"], execution_id)),
        daemon=True,
    )
    request.start()
    assert held.arrived.wait(60), "the send never reached the SMTP server"
    return server, port, answers, held


def _refused(port: int) -> bool:
    """Whether a connection to `port` is refused. One that raced the listener's closing (in
    its backlog as it closed) is reset instead: not yet the answer, try again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    return False


def test_a_stopped_server_refuses_new_connections_and_answers_the_send_in_hand(
    settings, workspace, smtp_sink
):
    server, port, answers, held = _serve_with_a_send_in_hand(settings, workspace, smtp_sink)
    try:
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not _refused(port):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.02)
        assert server.poll() is None  # refusing while the send is still in hand
        held.release()
        assert server.wait(timeout=30) == 0
    finally:
        held.release()
        if server.poll() is None:
            server.kill()
            server.wait()

    [execution] = tools.get_send_history(workspace["workspace_id"])["executions"]
    assert execution["status"] == "sent"  # recorded, not left `sending`
    [answer] = answers  # and answered before the process ended
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200 and answer.json()["status"] == "sent"


def test_a_stopped_server_exits_after_its_grace_period_even_with_a_send_still_held(
    settings, workspace, smtp_sink
):
    # The send stays held until the process has exited: it cannot wait for it.
    server, _, answers, held = _serve_with_a_send_in_hand(settings, workspace, smtp_sink)
    try:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0  # 5 s (waitress's shutdown wait) after the signal
    finally:
        held.release()
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "1 thread(s) still running" in server.stderr.read()
    deadline = time.monotonic() + 30
    while not answers:
        assert time.monotonic() < deadline, "the held request was neither answered nor closed"
        time.sleep(0.02)
    assert isinstance(answers[0], httpx.HTTPError)  # closed unanswered when the process ended
    [execution] = tools.get_send_history(workspace["workspace_id"])["executions"]
    assert execution["status"] == "sending"  # the stalled-send sweep escalates it later


def _port(server: subprocess.Popen[str]) -> int:
    assert server.stdout is not None
    found = re.search(r"http://127\.0\.0\.1:(\d+)", server.stdout.readline())
    assert found is not None
    return int(found.group(1))


def _post_send(port: int, key: str, execution_id: str) -> httpx.Response | Exception:
    body = {
        "to": "carol@example.com",
        "subject": "Plain hello",
        "body": "<p>Hello there</p>",
        "circuit_execution_id": execution_id,
        "client_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    try:
        return httpx.post(
            f"http://127.0.0.1:{port}/api/email/send",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
    except httpx.HTTPError as error:  # the connection closed unanswered
        return error

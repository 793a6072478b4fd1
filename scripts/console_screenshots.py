"""Screenshots of every console page, from a demo database seeded here, for the README.

    python scripts/console_screenshots.py [--out docs/console]

Needs Debian's chromium and chromium-driver. It builds a throw-away workspace in a temporary
folder: a day of sends spread over the hours (the tools' clock is moved for the seeding, the
one place "now" comes from), one through the group chat, addresses that the demo relay
refuses (so CX08 reschedules, then escalates), suppressions; then serves the console on
127.0.0.1 with the built-in development SMTP server, whose inbox shows the demo's mail.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tools
from agents.messages import Candidate, SendRequest
from api import create_app
from api.server import make_server
from orchestration.team import run_send_sync
from settings import load_settings
from tools import clock
from tools.dev_smtp_server import LocalSMTPServer, OutboxHandler

CLIENT = "550e8400-e29b-41d4-a716-446655440000"
ASSET = {
    "subject": "Your spring service reminder",
    "preheader": "Book before April 30 and save 15%",
    "html_body": "<h1>Time for a check-up</h1><p>Hello! Your heating system is due for its "
    "yearly service. <strong>Book before April 30</strong> and save 15%.</p>",
    "text_body": "Time for a check-up\n\nHello! Your heating system is due for its yearly "
    "service. Book before April 30 and save 15%.",
    "cta_url": "https://acme-heating.example/book",
    "tags": ["spring-reminder"],
}
PAGES = [
    ("overview", "/console/"),
    ("executions", "/console/executions"),
    ("escalations", "/console/escalations"),
    ("suppressions", "/console/suppressions"),
    ("inbox", "/console/inbox"),
]


class DemoRelay(OutboxHandler):
    """The demo's SMTP relay: keeps each message where the development server would, and
    refuses recipients whose address starts with `gone` by policy, so that CX08 reschedules
    them, then escalates them."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone"):
            return "554 5.7.1 Message refused by policy"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    out = parser.parse_args().out
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is not installed (apt install chromium chromium-driver)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        base = load_settings({}).replace(
            database_url=f"sqlite:///{folder}/demo.db",
            outbox_dir=Path(folder) / "outbox",
            signing_secret=secrets.token_urlsafe(32),  # a throw-away demo database
            public_base_url="https://mail.acme-heating.example",
            reschedule_delay_seconds=60.0,
            recipient_throttle_seconds=0,
        )
        key, email_id = seed(base)
        tools.shutdown()
        tools.configure(base)  # no SMTP_SERVER: the development server, and its inbox
        try:
            shoot(create_app(), key, email_id, out)
        finally:
            tools.shutdown()
    print(f"screenshots written to {out}/")


def seed(base: Any) -> tuple[str, str]:
    relay = LocalSMTPServer(DemoRelay(base.outbox_dir))
    relay.start()
    try:
        tools.configure(
            base.replace(smtp_server="127.0.0.1", smtp_port=relay.port, smtp_use_tls=False)
        )
        start = clock.utcnow() - timedelta(hours=23)
        workspace = tools.create_workspace(
            "Acme Heating",
            "news@acme-heating.example",
            "12 Furnace Row\nSpringfield, IL 62701",
            sender_name="Acme Heating",
        )
        ws = workspace["workspace_id"]
        for hour in range(23):
            with mock.patch("tools.clock.utcnow", return_value=start + timedelta(hours=hour)):
                for n in range(2 + (hour * 7) % 9):
                    _send(ws, f"customer{hour}-{n}@example.com")
        for address in ("gone.jones@example.com", "gone.smith@example.com"):
            _escalate(ws, address)
        tools.suppress(ws, "no.thanks@example.com", "unsubscribed")
        tools.suppress(ws, "bounced@example.net", "bounced", "hard", note="mailbox closed")
        tools.suppress(ws, "angry@example.org", "complained")
        chatted = _chat_send(ws, "pat.lee@example.com")
    finally:
        relay.stop()
    return workspace["api_key"], chatted


def _approve(ws: str) -> str:
    execution = f"exec_{clock.utcnow():%H%M%S%f}"
    for code in ("CX01", "CX02", "CX03", "CX04", "CX05"):
        tools.record_circuit_result(ws, execution, code, True)
    tools.record_circuit_result(ws, execution, "CX06", True, output=ASSET)
    return execution


def _send(ws: str, recipient: str) -> dict[str, Any]:
    return tools.send_email(ws, CLIENT, _approve(ws), recipient, ASSET)


def _escalate(ws: str, recipient: str) -> None:
    first = clock.utcnow() - timedelta(minutes=30)
    with mock.patch("tools.clock.utcnow", return_value=first):
        _send(ws, recipient)  # refused by the relay: CX08 reschedules it
    tools.send_due_emails()  # refused again: escalated


def _chat_send(ws: str, recipient: str) -> str:
    run = run_send_sync(
        SendRequest(
            workspace_id=ws,
            client_id=CLIENT,
            candidates=[Candidate(circuit_execution_id=_approve(ws), recipient=recipient)],
        )
    )
    assert run.sent, run
    return run.outcome.email_id


def shoot(app: Any, key: str, email_id: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    server = make_server(app, "127.0.0.1", 0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url + "/console/sign-in")
        driver.save_screenshot(str(out / "sign-in.png"))
        driver.find_element(By.ID, "api_key").send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        for name, path in PAGES:
            _full_page(driver, url + path, out / f"{name}.png")
        _full_page(driver, f"{url}/console/executions/{email_id}", out / "execution.png")
        _full_page(driver, f"{url}/console/inbox/{email_id}", out / "inbox-message.png")
    finally:
        driver.quit()  # the server's thread is a daemon: it ends with the script


def _full_page(driver: Any, url: str, path: Path) -> None:
    driver.get(url)
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, outerHeight - innerHeight]"
    )
    driver.set_window_size(1280, min(max(height, 757), 4000) + chrome)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


if __name__ == "__main__":
    main()

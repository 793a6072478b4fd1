"""The console in headless Chromium, the way an operator uses it: sign in, read the overview's
charts, filter the executions, open one and compare it with what the SMTP sink received,
acknowledge an escalation, remove a suppression, sign out. And a hostile email stays inert."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as until
from selenium.webdriver.support.ui import WebDriverWait

import tools
from agents.messages import Candidate, SendRequest
from api import create_app
from orchestration.team import run_send_sync
from tests.api_client import LiveServerClient
from tests.builders import ASSET, approve, send
from tests.observers import body_of, parse_message


@pytest.fixture
def runtime(settings):
    # CX08's reschedule falls due at once, so a send can be escalated without moving time.
    yield tools.configure(settings.replace(reschedule_delay_seconds=0.0))
    tools.shutdown()


@pytest.fixture
def server(runtime):
    live = LiveServerClient(create_app())
    yield live
    live.close()


class Operator:
    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url

    def open(self, path: str) -> None:
        self.browser.get(self.base_url + path)

    def find(self, css: str) -> Any:
        return self.browser.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return self.browser.find_elements(By.CSS_SELECTOR, css)

    def click_link(self, text: str) -> None:
        self.browser.find_element(By.LINK_TEXT, text).click()

    def wait_for_text(self, text: str) -> None:
        WebDriverWait(self.browser, 20).until(
            until.text_to_be_present_in_element((By.TAG_NAME, "body"), text)
        )

    def sign_in(self, api_key: str) -> None:
        self.open("/console/")
        self.find("#api_key").send_keys(api_key)
        self.find("button[type=submit]").click()
        self.wait_for_text("Overview")

    @property
    def text(self) -> str:
        return self.find("body").text


def escalate(workspace: dict[str, Any], sink: Any, recipient: str) -> str:
    """A send every provider refused twice: CX08 rescheduled it once, then escalated it."""
    sink.recorder.rcpt_replies.extend(["554 5.7.1 Message refused by policy"] * 2)
    failed = send(workspace, recipient)
    assert failed["status"] == "scheduled", failed
    assert tools.send_due_emails()["delivery_failed"] == 1
    return failed["email_id"]


def chat_send(workspace: dict[str, Any], recipient: str) -> str:
    execution = approve(workspace["workspace_id"])
    run = run_send_sync(
        SendRequest(
            workspace_id=workspace["workspace_id"],
            client_id="550e8400-e29b-41d4-a716-446655440000",
            candidates=[Candidate(circuit_execution_id=execution, recipient=recipient)],
        )
    )
    assert run.sent, run
    return run.outcome.email_id


def test_an_operator_works_through_the_console(browser, server, workspace, smtp_sink):
    chatted = chat_send(workspace, "chat@example.com")
    for n in range(3):
        send(workspace, f"reader{n}@example.com")
    escalated = escalate(workspace, smtp_sink, "gone@example.com")
    tools.suppress(workspace["workspace_id"], "unsub@example.com", "unsubscribed")
    operator = Operator(browser, server.base_url)

    operator.sign_in(workspace["api_key"])

    sent_bars = operator.all("#sends-chart rect.fill-sent")
    assert sum(int(bar.get_attribute("data-count")) for bar in sent_bars) == 4
    assert operator.all("#sends-chart rect.fill-escalated")
    assert operator.find("#usage-gauge").is_displayed()
    assert "escalations waiting" in operator.text

    operator.click_link("Executions")
    operator.find("input[name=recipient]").send_keys("chat@example.com")
    operator.find("form.filters button[type=submit]").click()
    operator.wait_for_text("1 execution,")
    assert "reader0@example.com" not in operator.find("#executions").text
    operator.click_link(ASSET["subject"])
    operator.wait_for_text("Message as sent")

    received = next(m for m in smtp_sink.messages if m.rcpt_tos == ["chat@example.com"])
    message = parse_message(received.data)
    headers = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in operator.all("#message table.headers tr")
    }
    assert headers["Message-ID"] == message["Message-ID"]
    assert headers["Subject"] == message["Subject"]
    assert headers["List-Unsubscribe"] == " ".join(message["List-Unsubscribe"].split())
    shown_text = operator.find("#message pre.text-part").text
    assert shown_text == body_of(message, "plain").strip().replace("\r\n", "\n")
    assert "what was sent is what CX06 approved" in operator.find("#hashes").text
    transcript = operator.find("#transcript").text
    assert "CircuitValidatorAgent" in transcript and "EmailAgent" in transcript
    assert chatted in transcript
    browser.switch_to.frame(operator.find("#message iframe.html-part"))
    assert "We have an important update for you." in operator.text
    browser.switch_to.default_content()

    operator.click_link("Escalations")
    operator.find(f"#ack-{escalated}").send_keys("Address is gone; told the client")
    operator.find(f"#ack-{escalated}").submit()
    operator.wait_for_text("Acknowledged: the note is recorded")
    assert "Nothing needs a person" in operator.text
    assert tools.list_escalations(workspace["workspace_id"])["total_count"] == 0

    operator.click_link("Suppressions")
    assert "unsub@example.com" in operator.find("#suppressions").text
    operator.find("#rm-1").send_keys("Resubscribed in writing")
    operator.find("#rm-1").submit()
    operator.wait_for_text("Lifted the suppression of unsub@example.com")
    assert tools.is_suppressed(workspace["workspace_id"], "unsub@example.com") is False

    operator.find("header form button").click()
    operator.wait_for_text("Sign in")
    operator.open("/console/executions")
    assert browser.current_url.startswith(server.base_url + "/console/sign-in")


def test_a_hostile_subject_and_body_stay_inert_in_the_browser(
    browser, server, workspace, smtp_sink
):
    hostile = {
        **ASSET,
        "subject": "<script>alert('subject')</script> Deals",
        "html_body": '<p id="inside">Hi</p><script>document.title="pwned";alert(1)</script>'
        '<a id="js" href="javascript:alert(2)">click</a><img src="https://tracker.example/p.gif">',
    }
    sent = send(workspace, final_asset=hostile)
    operator = Operator(browser, server.base_url)
    operator.sign_in(workspace["api_key"])

    operator.open(f"/console/executions/{sent['email_id']}")

    assert operator.find("#subject").text.startswith("<script>alert('subject')</script> Deals")
    browser.switch_to.frame(operator.find("#message iframe.html-part"))
    operator.find("#js").click()
    browser.switch_to.default_content()
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no script ran
    assert "pwned" not in browser.title


def test_a_second_workspace_signs_in_and_sees_nothing_of_the_first(
    browser, server, workspace, other_workspace, smtp_sink
):
    sent = send(workspace, "private@example.com")
    operator = Operator(browser, server.base_url)
    operator.sign_in(other_workspace["api_key"])

    for page in ("Executions", "Escalations", "Suppressions"):
        operator.click_link(page)
        assert "private@example.com" not in operator.text
    operator.open(f"/console/executions/{sent['email_id']}")
    assert "Not found" in operator.text

"""The unsubscribe link's pages: GET confirms without changing anything, POST one-click
(RFC 8058) suppresses; driven over HTTP, and in headless Chromium from a received email."""

from __future__ import annotations

import re
import time
from html import unescape
from urllib.parse import urlsplit

import pytest

import tools
from tests.api_client import LiveServerClient
from tests.builders import send
from tests.observers import body_of, parse_message

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def link_from(raw: bytes) -> str:
    """The path and query of the unsubscribe link in a received email's html part."""
    html = body_of(parse_message(raw), "html")
    match = re.search(r'href="([^"]+/api/email/unsubscribe\?token=[^"]+)"', html)
    assert match, html
    url = urlsplit(unescape(match.group(1)))
    assert url.scheme == "https" and url.netloc == "mail.example.test"
    return f"{url.path}?{url.query}"


def header_link(raw: bytes) -> str:
    """The https link of the List-Unsubscribe header, as a mail client would POST to it."""
    header = parse_message(raw)["List-Unsubscribe"]
    match = re.search(r"<https://mail\.example\.test(/api/email/unsubscribe\?token=[^>]+)>", header)
    assert match, header
    return match.group(1)


def test_the_page_confirms_and_changes_nothing(api, workspace, smtp_sink):
    sent = send(workspace)
    path = link_from(smtp_sink.messages[0].data)

    reply = api.get(path)

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "bob@example.com" in reply.text and "Acme News" in reply.text
    assert 'id="confirm"' in reply.text
    assert 'name="List-Unsubscribe" value="One-Click"' in reply.text
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in reply.headers
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False
    engagement = tools.get_email_status(sent["email_id"])["engagement"]
    assert engagement["unsubscribed"] is False and engagement["collected_at"] is None


def test_parameters_added_to_the_link_on_the_way_are_ignored(api, workspace, smtp_sink):
    send(workspace)
    path = header_link(smtp_sink.messages[0].data) + "&utm_source=mail"

    page = api.get(path)
    posted = api.post(path, data=ONE_CLICK)

    assert page.status_code == 200 and posted.status_code == 200
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is True


def test_the_page_escapes_what_it_shows(api, smtp_sink, runtime):
    hostile = tools.create_workspace(
        "Evil", "e@evil.example", "1 Road, Town", sender_name="<script>alert(1)</script>"
    )
    send(hostile)

    page = api.get(link_from(smtp_sink.messages[0].data))

    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no script may run


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_one_click_post_suppresses_without_auth_or_redirect(api, workspace, smtp_sink, encoding):
    first = send(workspace)
    path = header_link(smtp_sink.messages[0].data)
    body = (
        {"data": ONE_CLICK}
        if encoding == "form"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )

    reply = api.post(path, **body)

    assert reply.status_code == 200
    assert "location" not in reply.headers and "set-cookie" not in reply.headers
    assert 'id="done"' in reply.text
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is True
    assert tools.get_email_status(first["email_id"])["engagement"]["unsubscribed"] is True
    assert send(workspace)["error"]["code"] == "suppressed"
    again = api.post(path, data=ONE_CLICK)  # a second click is harmless
    assert again.status_code == 200
    assert 'id="done"' in api.get(path).text  # the page now says it is done


def test_a_post_without_the_one_click_body_changes_nothing(api, workspace, smtp_sink):
    send(workspace)
    path = header_link(smtp_sink.messages[0].data)

    reply = api.post(path, data={"List-Unsubscribe": "yes"})

    assert reply.status_code == 400
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


@pytest.mark.parametrize("tamper", ["flip", "garbage", "missing"])
def test_a_tampered_link_says_so_and_changes_nothing(api, workspace, smtp_sink, tamper):
    send(workspace)
    path = header_link(smtp_sink.messages[0].data)
    if tamper == "flip":
        path = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    elif tamper == "garbage":
        path = "/api/email/unsubscribe?token=not-a-token"
    else:
        path = "/api/email/unsubscribe"

    page = api.get(path)
    posted = api.post(path, data=ONE_CLICK)

    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert ("not complete" if tamper == "missing" else "not valid") in page.text
    assert posted.status_code == 400 and "Nothing was changed" in posted.text
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


def test_an_expired_link_says_so_and_changes_nothing(api, workspace, smtp_sink, runtime, mocker):
    send(workspace)
    path = header_link(smtp_sink.messages[0].data)
    max_age = runtime.settings.unsubscribe_token_max_age_days * 86_400

    expired = mocker.patch("itsdangerous.timed.time.time", return_value=time.time() + max_age + 10)
    page = api.get(path)
    posted = api.post(path, data=ONE_CLICK)
    mocker.stop(expired)

    assert page.status_code == 400 and "expired" in page.text
    assert posted.status_code == 400
    assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False


# Headless Chromium (the `browser` fixture: tests/conftest.py) ------------------------


def test_unsubscribe_in_chromium_from_a_received_email_blocks_the_next_send(
    browser, workspace, smtp_sink
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from api import create_app

    server = LiveServerClient(create_app())
    try:
        send(workspace)
        browser.get(server.base_url + link_from(smtp_sink.messages[0].data))
        assert browser.find_element(By.ID, "email").text == "bob@example.com"
        assert tools.is_suppressed(workspace["workspace_id"], "bob@example.com") is False

        browser.find_element(By.ID, "confirm").click()
        WebDriverWait(browser, 10).until(
            expected_conditions.presence_of_element_located((By.ID, "done"))
        )
    finally:
        server.close()

    assert "You are unsubscribed" in browser.page_source
    assert browser.get_cookies() == []
    blocked = send(workspace)
    assert blocked["status"] == "blocked" and blocked["error"]["code"] == "suppressed"
    assert len(smtp_sink.messages) == 1

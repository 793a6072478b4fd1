"""Fixtures only: a real aiosmtpd server, a real SQLite file, PostgreSQL when configured, fake
provider servers, the tools configured on them, and the HTTP API over both transports.

Builders (settings, approved executions, sends) are in `tests/builders.py`; what tests observe
(committed rows, parsed messages) in `tests/observers.py`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import tools
from api import create_app
from persistence import make_engine, upgrade_to_head
from settings import Settings
from tests.api_client import API, InProcessClient, LiveServerClient
from tests.builders import make_settings
from tests.fake_providers import FakeResend, FakeSendGrid
from tests.smtp_sink import RecordingHandler, SMTPSink


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A real aiosmtpd server on 127.0.0.1 that records what it receives."""
    sink = SMTPSink(RecordingHandler())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def sendgrid_fake() -> Iterator[FakeSendGrid]:
    """A local SendGrid v3 Mail Send that validates and records like the real one."""
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


@pytest.fixture
def resend_fake() -> Iterator[FakeResend]:
    """A local Resend `POST /emails`, Idempotency-Key semantics included."""
    fake = FakeResend().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    path = tmp_path / "email_agent.db"
    shutil.copy(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def settings(sqlite_url: str, smtp_sink: SMTPSink, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, smtp_sink, tmp_path)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[tools.runtime.Runtime]:
    """The tools configured against the test database and SMTP sink."""
    yield tools.configure(settings)
    tools.shutdown()


@pytest.fixture
def workspace(runtime: Any) -> dict[str, Any]:
    result = tools.create_workspace(
        "Acme", "news@acme.example", "1 Main Street\nSpringfield, IL 62701", sender_name="Acme News"
    )
    assert result["success"], result
    return result


@pytest.fixture
def other_workspace(runtime: Any) -> dict[str, Any]:
    """A second tenant, for checking that one never sees the other's data."""
    result = tools.create_workspace("Globex", "hello@globex.example", "2 Side Road, Shelbyville")
    assert result["success"], result
    return result


@pytest.fixture(params=["flask", "http"])
def api(request: pytest.FixtureRequest, runtime: Any) -> Iterator[API]:
    """The HTTP API on the test runtime, through Flask's test client and through waitress."""
    app = create_app()
    client = InProcessClient(app) if request.param == "flask" else LiveServerClient(app)
    yield API(client)
    client.close()


# PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("EMAIL_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PostgreSQL tests need EMAIL_TEST_POSTGRES_URL (e.g. postgresql+psycopg://...)")
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        # Asked for and not there is a fault (a typo, a server down), not a machine without
        # PostgreSQL: the tests fail rather than pass by skipping.
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[:1]
        pytest.fail(
            f"EMAIL_TEST_POSTGRES_URL is set but {shown} cannot be used: "
            f"{type(error).__name__} {reason[0] if reason else ''}",
            pytrace=False,
        )
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A database of its own on the shared server, dropped afterwards, owned by a role of its
    own that is no superuser, as the service should connect in production: superusers bypass
    row-level security, so through this URL every PostgreSQL test runs under it."""
    name = f"email_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
    server = make_url(postgres_server_url)
    url = server.set(database=name, username=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


# Headless Chromium -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test, so a fixture can tell that its test failed."""
    outcome = yield
    setattr(item, f"report_{call.when}", outcome.get_result())


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Debian's Chromium, headless, through chromedriver; on a failed test, a screenshot of
    the page it was on is kept in the test's temporary folder."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot of the failed page: {shot}")
    driver.quit()

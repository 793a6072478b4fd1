"""Configuration from the environment: names, aliases, presets, clear errors, no leaked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings, SettingsError, load_settings


def test_defaults_are_the_embedded_ones():
    settings = load_settings({})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///email_agent.db"
    assert settings.uses_dev_smtp_server
    assert settings.rate_limit_per_hour == 300  # seed 001's figure, not seed 000's 100
    assert settings.timeout_seconds == 30 and settings.max_retries == 2
    assert settings.retry_initial_delay == 2.0


def test_seed_000_names_are_read():
    settings = load_settings(
        {
            "SMTP_SERVER": "smtp.acme.example",
            "SMTP_PORT": "2525",
            "SMTP_USE_TLS": "false",
            "SMTP_USERNAME": "u",
            "SMTP_PASSWORD": "p",
            "DEFAULT_SENDER": "x@acme.example",
            "EMAIL_RATE_LIMIT": "50",
            "EMAIL_TIMEOUT": "7.5",
            "EMAIL_AGENT_LOG_LEVEL": "debug",
            "EMAIL_LOG_DATABASE_URL": "sqlite:////tmp/x.db",
            "EMAIL_ATTACHMENTS_DIR": "/srv/files",
        }
    )
    assert (settings.smtp_server, settings.smtp_port, settings.smtp_use_tls) == (
        "smtp.acme.example",
        2525,
        False,
    )
    assert (settings.smtp_username, settings.smtp_password) == ("u", "p")
    assert settings.rate_limit_per_hour == 50 and settings.timeout_seconds == 7.5
    assert settings.log_level == "DEBUG" and settings.attachments_dir == Path("/srv/files")


def test_seed_001_names_are_aliases():
    settings = load_settings(
        {
            "EMAIL_SERVER_HOST": "mail.example",
            "EMAIL_SERVER_PORT": "587",
            "EMAIL_SERVER_USER": "user",
            "EMAIL_SERVER_PASSWORD": "pw",
        }
    )
    assert settings.smtp_server == "mail.example"
    assert (settings.smtp_username, settings.smtp_password) == ("user", "pw")
    assert settings.smtp_use_tls is True


LOGIN = {"SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"}


def test_provider_preset_fills_host_port_and_tls():
    settings = load_settings({"SMTP_PROVIDER": "gmail", **LOGIN})
    assert (settings.smtp_server, settings.smtp_port, settings.smtp_use_tls) == (
        "smtp.gmail.com",
        587,
        True,
    )
    sendgrid = load_settings({"SMTP_PROVIDER": "sendgrid-smtp", **LOGIN})
    assert sendgrid.smtp_server == "smtp.sendgrid.net"
    seed_name = load_settings({"SMTP_PROVIDER": "sendgrid", **LOGIN})  # seed 000's name
    assert (seed_name.smtp_server, seed_name.smtp_port, seed_name.smtp_use_tls) == (
        "smtp.sendgrid.net",
        587,
        True,
    )
    assert load_settings({"SMTP_PROVIDER": "outlook", "SMTP_PORT": "25", **LOGIN}).smtp_port == 25


def test_preset_that_needs_a_login_refuses_to_start_without_one():
    with pytest.raises(SettingsError, match="SMTP_PROVIDER=gmail needs SMTP_USERNAME"):
        load_settings({"SMTP_PROVIDER": "gmail"})


def test_implicit_tls_defaults_to_port_465():
    settings = load_settings({"SMTP_SERVER": "s", "SMTP_USE_SSL": "true"})
    assert settings.smtp_port == 465 and settings.smtp_use_ssl and not settings.smtp_use_tls


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMAIL_RATE_LIMIT": "many"}, "EMAIL_RATE_LIMIT must be an integer"),
        ({"EMAIL_RATE_LIMIT": "0"}, "EMAIL_RATE_LIMIT must be at least 1"),
        ({"SMTP_PORT": "x"}, "SMTP_PORT must be an integer"),
        ({"EMAIL_TIMEOUT": "-1"}, "EMAIL_TIMEOUT must be at least 0"),
        ({"SMTP_USE_TLS": "maybe"}, "SMTP_USE_TLS must be true or false"),
        ({"SMTP_PROVIDER": "aol"}, "SMTP_PROVIDER must be one of"),
        ({"SMTP_USE_TLS": "1", "SMTP_USE_SSL": "1"}, "cannot both be true"),
        ({"EMAIL_PUBLIC_BASE_URL": "ftp://x"}, "EMAIL_PUBLIC_BASE_URL must be an http(s) URL"),
        ({"EMAIL_AGENT_LOG_LEVEL": "loud"}, "EMAIL_AGENT_LOG_LEVEL must be"),
        ({"EMAIL_LOG_FORMAT": "xml"}, "EMAIL_LOG_FORMAT must be plain or json"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_a_signing_secret_is_long_enough_not_to_be_guessed():
    # It signs unsubscribe links and derives the console's session key: a short one could be
    # found from one signed link, offline.
    with pytest.raises(SettingsError, match="EMAIL_SIGNING_SECRET must be at least 32 characters"):
        load_settings({"EMAIL_SIGNING_SECRET": "s3cr3t"})
    assert load_settings({"EMAIL_SIGNING_SECRET": "x" * 32}).signing_secret == "x" * 32


def test_secrets_are_not_in_the_repr():
    settings = load_settings(
        {
            "SMTP_PASSWORD": "hunter2",
            "EMAIL_SIGNING_SECRET": "s3cr3t-signing-key-of-32-characters",
            "EMAIL_LOG_DATABASE_URL": "postgresql+psycopg://app:dbpass@db/email",
        }
    )
    for secret in ("hunter2", "s3cr3t", "dbpass"):
        assert secret not in repr(settings)
    assert "dbpass" not in settings.database_url_for_display
    assert settings.database_url_for_display.startswith("postgresql+psycopg://app:***@db")


def test_provider_keys_urls_and_cx08_settings_are_read():
    settings = load_settings(
        {
            "SENDGRID_API_KEY": "SG.secret-value",
            "RESEND_API_KEY": "re_secret_value",
            "RESEND_API_BASE_URL": "http://127.0.0.1:8025/",
            "EMAIL_RETRY_MAX_DELAY": "10",
            "EMAIL_BREAKER_FAILURES": "3",
            "EMAIL_BREAKER_WINDOW_SECONDS": "60",
            "EMAIL_BREAKER_COOLDOWN_SECONDS": "600",
            "EMAIL_RESCHEDULE_DELAY_SECONDS": "120",
        }
    )
    assert settings.sendgrid_api_base_url == "https://api.sendgrid.com"
    assert settings.resend_api_base_url == "http://127.0.0.1:8025"
    assert settings.retry_max_delay == 10 and settings.breaker_failure_threshold == 3
    assert settings.breaker_window_seconds == 60 and settings.breaker_cooldown_seconds == 600
    assert settings.reschedule_delay_seconds == 120
    # With a real provider configured, the development server is not used at all.
    assert not settings.uses_dev_smtp_server
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    "url",
    ["http://api.sendgrid.com", "ftp://127.0.0.1", "https://", "not a url", "http://10.0.0.1:80"],
)
def test_api_base_url_must_be_https_except_to_this_machine(url):
    with pytest.raises(SettingsError, match="SENDGRID_API_BASE_URL must be an https URL"):
        load_settings({"SENDGRID_API_BASE_URL": url})


def test_stalled_send_threshold_must_exceed_the_longest_delivery():
    settings = load_settings({})
    assert settings.stalled_send_seconds == 3600
    assert settings.longest_delivery_seconds == 900  # 3 x ((2 + 1) x 2 x 30 s + 2 x 60 s)
    assert load_settings({"EMAIL_STALLED_SEND_SECONDS": "901"}).stalled_send_seconds == 901

    with pytest.raises(SettingsError, match=r"EMAIL_STALLED_SEND_SECONDS must exceed .*\(900 s\)"):
        load_settings({"EMAIL_STALLED_SEND_SECONDS": "900"})
    # Longer timeouts raise the bound with them.
    with pytest.raises(SettingsError, match="with EMAIL_TIMEOUT, EMAIL_MAX_RETRIES and"):
        load_settings({"EMAIL_TIMEOUT": "600"})
    with pytest.raises(SettingsError, match="EMAIL_STALLED_SEND_SECONDS must be at least 300"):
        load_settings({"EMAIL_STALLED_SEND_SECONDS": "299", "EMAIL_MAX_RETRIES": "0"})


def test_the_task_queue_is_configured_by_its_broker_url():
    assert load_settings({}).celery_broker_url is None  # one machine: no broker
    url = "redis://127.0.0.1:6379/3"
    settings = load_settings({"CELERY_BROKER_URL": url})
    assert settings.celery_broker_url == url
    assert settings.broker_visibility_seconds > settings.longest_delivery_seconds
    assert "6379" not in repr(settings)  # it may hold a password
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL must be a redis:// or amqp://"):
        load_settings({"CELERY_BROKER_URL": "http://127.0.0.1"})


def test_a_dotenv_file_fills_what_the_environment_does_not_set(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "EMAIL_RATE_LIMIT=25\nEMAIL_SERVER_HOST=smtp.file.example\nEMAIL_AGENT_LOG_LEVEL=debug\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMAIL_AGENT_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("EMAIL_RATE_LIMIT", raising=False)
    monkeypatch.delenv("SMTP_SERVER", raising=False)
    monkeypatch.delenv("EMAIL_SERVER_HOST", raising=False)

    settings = load_settings()

    assert settings.rate_limit_per_hour == 25
    assert settings.smtp_server == "smtp.file.example"  # an alias works from the file too
    assert settings.log_level == "WARNING"  # the environment wins


def test_a_dotenv_file_that_is_not_text_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / ".env").write_bytes(b"SMTP_SERVER=caf\xe9.example\n")  # Latin-1, not UTF-8
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SettingsError, match=r"\.env is not UTF-8 text$"):
        load_settings()


def test_a_malformed_dotenv_setting_is_the_same_clear_error(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("SMTP_PORT=smtp\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMTP_PORT", raising=False)

    with pytest.raises(SettingsError) as from_file:
        load_settings()
    with pytest.raises(SettingsError) as from_environment:
        load_settings({"SMTP_PORT": "smtp"})
    assert str(from_file.value) == str(from_environment.value)


def test_a_name_of_ours_that_is_no_setting_is_refused_from_the_file_and_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FLASK_DEBUG=1\nEMAIL_RATE_LIMT=25\n")
    with pytest.raises(SettingsError) as misspelt:
        load_settings()
    assert str(misspelt.value) == (
        "EMAIL_RATE_LIMT is not a setting of this service (did you mean EMAIL_RATE_LIMIT?)"
    )
    # Another service's name for it would be silently ignored, and mail sent elsewhere.
    with pytest.raises(SettingsError) as theirs:
        load_settings({"SMTP_HOST": "mail.example"})
    assert str(theirs.value).endswith("(did you mean SMTP_SERVER?)")

    # Other tools' variables in the same file (Flask's, the model list's) are theirs.
    (tmp_path / ".env").write_text("FLASK_DEBUG=1\nOAI_CONFIG_LIST=models.json\nSMTP_PORT=2525\n")
    monkeypatch.delenv("SMTP_PORT", raising=False)
    assert load_settings().smtp_port == 2525


def test_a_copy_with_changes_is_checked_as_a_new_one():
    settings = load_settings({})
    changed = settings.replace(smtp_server="mail.example", smtp_port=25)

    assert (changed.smtp_server, changed.smtp_port) == ("mail.example", 25)
    assert settings.smtp_server is None and settings.smtp_port == 587  # immutable
    with pytest.raises(SettingsError, match=r"^smtp_port must be at least 1$"):
        settings.replace(smtp_port=0)
    with pytest.raises(SettingsError, match="cannot both be true"):
        settings.replace(smtp_use_tls=True, smtp_use_ssl=True)
    with pytest.raises(SettingsError, match=r"^smpt_port is not a setting"):
        settings.replace(smpt_port=25)  # a misspelt field


def test_an_error_built_in_code_shows_no_value_either():
    with pytest.raises(SettingsError) as caught:
        Settings(smtp_password="hunter2-secret", smtp_port="not a port")

    assert str(caught.value) == "smtp_port must be an integer"
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert "hunter2" not in repr(caught.value)


def test_an_alias_from_the_environment_is_named_in_its_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("SMTP_PORT", raising=False)
    monkeypatch.setenv("EMAIL_SERVER_PORT", "twenty-five")

    with pytest.raises(SettingsError, match=r"^EMAIL_SERVER_PORT must be an integer$"):
        load_settings()


def test_a_whole_number_is_written_in_digits():
    for text in ("3.0", "25.5", "1e2", "0x19"):
        with pytest.raises(SettingsError, match=r"^SMTP_PORT must be an integer$"):
            load_settings({"SMTP_PORT": text})
    assert load_settings({"SMTP_PORT": " 2525 "}).smtp_port == 2525
    with pytest.raises(SettingsError, match=r"^SMTP_PORT must be at most 65535$"):
        load_settings({"SMTP_PORT": "99999"})


def test_a_blank_variable_gives_way_to_its_alias_and_the_file_to_the_environment(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SMTP_SERVER=smtp.file.example\nSMTP_PORT=2525\n")
    monkeypatch.setenv("SMTP_SERVER", "  ")
    monkeypatch.setenv("EMAIL_SERVER_HOST", "smtp.env.example")
    monkeypatch.delenv("SMTP_PORT", raising=False)
    monkeypatch.delenv("EMAIL_SERVER_PORT", raising=False)

    settings = load_settings()

    assert settings.smtp_server == "smtp.env.example"  # the environment's, by its alias
    assert settings.smtp_port == 2525
    assert load_settings({"SMTP_SERVER": "", "EMAIL_SERVER_HOST": "a.example"}).smtp_server == (
        "a.example"
    )


def test_every_setting_is_read_from_a_variable_and_whitespace_is_unset():
    from settings import VARIABLES

    assert {"SMTP_SERVER", "EMAIL_SERVER_HOST", "EMAIL_LOG_DATABASE_URL"} <= VARIABLES
    assert all(field.validation_alias for field in Settings.model_fields.values())
    assert load_settings({"EMAIL_RATE_LIMIT": "   ", "SMTP_SERVER": " "}) == Settings()


def test_a_copy_given_no_smtp_server_uses_the_development_server_whatever_the_preset():
    preset = load_settings({"SMTP_PROVIDER": "gmail", **LOGIN})
    offline = preset.replace(smtp_server=None)  # as the notebooks make theirs

    assert offline.smtp_server is None and offline.uses_dev_smtp_server
    assert preset.replace(smtp_port=2525).smtp_server == "smtp.gmail.com"

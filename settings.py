"""Service configuration: read once from the environment into one typed, immutable object.

Seed 000's variable names are primary; seed 001's `EMAIL_SERVER_*` names are accepted as aliases.
Tests and embedding code build their own `Settings` (or `dataclasses.replace` a loaded one) and pass
it in; nothing else in the code base reads `os.environ` for service settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import dotenv
from sqlalchemy.engine import make_url

N = TypeVar("N", int, float)

# Seed 000's SMTP presets. `SMTP_PROVIDER=<name>` fills host, port and STARTTLS; explicit
# SMTP_* variables still win.
SMTP_PRESETS: dict[str, dict[str, object]] = {
    "gmail": {"server": "smtp.gmail.com", "port": 587, "use_tls": True, "auth_required": True},
    "outlook": {
        "server": "smtp-mail.outlook.com",
        "port": 587,
        "use_tls": True,
        "auth_required": True,
    },
    "sendgrid-smtp": {
        "server": "smtp.sendgrid.net",
        "port": 587,
        "use_tls": True,
        "auth_required": True,
    },
}
# Seed 000's name for SendGrid's SMTP relay; `sendgrid-smtp` says which of SendGrid's two
# doors it is (SENDGRID_API_KEY is the other).
SMTP_PRESETS["sendgrid"] = SMTP_PRESETS["sendgrid-smtp"]


class SettingsError(ValueError):
    """A configuration value is missing or malformed.

    The message names the variable, never its value (it may be a secret).
    """


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about its environment."""

    database_url: str = field(default="sqlite:///email_agent.db", repr=False)  # may hold a password
    # SMTP. `smtp_server=None` selects the embedded development server (aiosmtpd on 127.0.0.1).
    smtp_server: str | None = None
    smtp_port: int = 587
    smtp_use_tls: bool = True
    smtp_use_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    default_sender: str = "noreply@example.com"
    # Limits.
    rate_limit_per_hour: int = 300
    recipient_throttle_seconds: int = 60
    bounce_suppression_days: int = 30
    timeout_seconds: float = 30.0
    max_retries: int = 2
    retry_initial_delay: float = 2.0
    retry_max_delay: float = 60.0  # cap on any one wait, Retry-After included
    # HTTP API providers: each is in the chain (SendGrid -> Resend -> SMTP) when its key is set.
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_api_base_url: str = "https://api.sendgrid.com"
    resend_api_key: str | None = field(default=None, repr=False)
    resend_api_base_url: str = "https://api.resend.com"
    # Webhook verification: SendGrid's ECDSA public key (base64 DER), Resend's Svix secret.
    sendgrid_webhook_public_key: str | None = None
    resend_webhook_secret: str | None = field(default=None, repr=False)
    # CX08 self-correction.
    breaker_failure_threshold: int = 5
    breaker_window_seconds: float = 300.0
    breaker_cooldown_seconds: float = 300.0
    reschedule_delay_seconds: float = 900.0
    # A send still `sending` this long after its reservation outlived its process: escalated.
    # Far above the longest delivery (three providers, each retried, each wait capped).
    stalled_send_seconds: int = 3600
    # Content and links.
    public_base_url: str = "http://localhost:8080"
    unsubscribe_mailto: str | None = None
    unsubscribe_token_max_age_days: int = 365
    signing_secret: str | None = field(default=None, repr=False)
    attachments_dir: Path | None = None
    max_attachment_bytes: int = 10 * 1024 * 1024
    check_deliverability: bool = False
    # Embedded development server.
    outbox_dir: Path = Path("outbox")
    log_level: str = "INFO"
    log_format: str = "plain"  # or "json": one object per line
    # `/metrics` answers only a request bearing this token; unset, it is off.
    metrics_token: str | None = field(default=None, repr=False)
    # CX05's brand guard (seed 001, CAN-SPAM point 3; Gmail/Yahoo 2024: complaints under 0.3%,
    # aiming for 0.1%): rates over the window, judged once it holds enough sends; a hard
    # complaint rate pauses new sends until an operator lifts it, unless the guard is off.
    complaint_rate_warn: float = 0.001
    complaint_rate_hard: float = 0.003
    unsubscribe_rate_warn: float = 0.01
    reputation_window_days: int = 7
    reputation_min_sends: int = 100
    complaint_guard: bool = True
    # Run CX07's engagement evaluation on the emails whose engagement changed, at each
    # collect-metrics (off: only when asked for one email).
    cx07_on_collect: bool = False
    # A console sign-in lasts this long, however active (the cookie is signed, not stored).
    console_session_minutes: int = 480
    # HTTP API: the largest request body accepted (CX06 outputs go up to 1 MB of JSON).
    api_max_request_bytes: int = 2 * 1024 * 1024
    # The task queue (Celery): unset, one machine runs everything itself (`main.py worker`).
    celery_broker_url: str | None = field(default=None, repr=False)  # may hold a password
    dispatch_interval_seconds: float = 5.0  # how often beat publishes what waits for a worker
    # Stored sends a worker claims, hands over and records together (one task, two commits).
    send_batch_size: int = 20

    @property
    def uses_dev_smtp_server(self) -> bool:
        """With no provider configured at all, mail goes to the embedded development server.

        Never as a fallback behind a real provider: a send that "succeeds" into a local folder
        would look delivered.
        """
        return self.smtp_server is None and not (self.sendgrid_api_key or self.resend_api_key)

    @property
    def longest_delivery_seconds(self) -> float:
        """An upper bound on one delivery: every provider (three at most) tried with all its
        retries, each attempt up to two timeouts long (an SMTP exchange is several reads),
        each wait at its cap."""
        per_provider = (self.max_retries + 1) * 2 * self.timeout_seconds
        per_provider += self.max_retries * self.retry_max_delay
        return 3 * per_provider

    @property
    def broker_visibility_seconds(self) -> int:
        """How long the broker waits for a task's acknowledgement before giving it to another
        worker: past the longest delivery, so a send in progress is never handed out twice
        (a second delivery would find the row claimed and do nothing, but wastes a worker)."""
        return self.stalled_send_seconds

    @property
    def database_url_for_display(self) -> str:
        """The database URL with any password masked, for logs and messages."""
        return make_url(self.database_url).render_as_string(hide_password=True)


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return name, value.strip()
    return None


def _number(
    env: Mapping[str, str], default: N, *names: str, kind: Callable[[str], N], minimum: N
) -> N:
    found = _first(env, *names)
    if found is None:
        return default
    name, raw = found
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(
            f"{name} must be {'an integer' if kind is int else 'a number'}"
        ) from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}")
    return value


def _log_format(env: Mapping[str, str]) -> str:
    value = (_str(env, "plain", "EMAIL_LOG_FORMAT") or "plain").lower()
    if value not in {"plain", "json"}:
        raise SettingsError("EMAIL_LOG_FORMAT must be plain or json")
    return value


def _int(env: Mapping[str, str], default: int, *names: str, minimum: int = 0) -> int:
    return _number(env, default, *names, kind=int, minimum=minimum)


def _float(env: Mapping[str, str], default: float, *names: str) -> float:
    return _number(env, default, *names, kind=float, minimum=0.0)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], default: bool, *names: str) -> bool:
    found = _first(env, *names)
    if found is None:
        return default
    name, raw = found
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false")


def _environment_over_dotenv() -> dict[str, str]:
    path = dotenv.find_dotenv(usecwd=True)
    from_file = {k: v for k, v in dotenv.dotenv_values(path).items() if v is not None}
    return {**from_file, **os.environ} if path else dict(os.environ)


def _str(env: Mapping[str, str], default: str | None, *names: str) -> str | None:
    found = _first(env, *names)
    return default if found is None else found[1]


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _api_base_url(env: Mapping[str, str], default: str, name: str) -> str:
    """An API base URL: https, or http only to this machine (local fakes), so that an API key
    never crosses a network in clear text."""
    url = (_str(env, default, name) or default).rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if host and (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK_HOSTS)):
        return url
    raise SettingsError(f"{name} must be an https URL (http only to localhost)")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from environment variables (default: `os.environ`, over the `.env`
    file nearest the current directory, if any, as Flask reads one: a variable set in the
    environment wins over the file).

    Raises `SettingsError` naming the offending variable when a value cannot be used, whether
    it came from the environment or the file.
    """
    env = _environment_over_dotenv() if env is None else env
    preset_name = _str(env, None, "SMTP_PROVIDER")
    preset: dict[str, object] = {}
    if preset_name is not None:
        preset_name = preset_name.lower()
        if preset_name not in SMTP_PRESETS:
            raise SettingsError(f"SMTP_PROVIDER must be one of {', '.join(sorted(SMTP_PRESETS))}")
        preset = SMTP_PRESETS[preset_name]

    smtp_server = _str(env, None, "SMTP_SERVER", "EMAIL_SERVER_HOST") or preset.get("server")
    use_ssl = _bool(env, False, "SMTP_USE_SSL")
    default_port = 465 if use_ssl else int(preset.get("port", 587))  # type: ignore[arg-type]
    use_tls = _bool(env, bool(preset.get("use_tls", not use_ssl)), "SMTP_USE_TLS")
    if use_tls and use_ssl:
        raise SettingsError("SMTP_USE_TLS and SMTP_USE_SSL cannot both be true")

    username = _str(env, None, "SMTP_USERNAME", "EMAIL_SERVER_USER")
    password = _str(env, None, "SMTP_PASSWORD", "EMAIL_SERVER_PASSWORD")
    if preset.get("auth_required") and not (username and password):
        raise SettingsError(f"SMTP_PROVIDER={preset_name} needs SMTP_USERNAME and SMTP_PASSWORD")

    attachments_dir = _str(env, None, "EMAIL_ATTACHMENTS_DIR")
    log_level = (_str(env, "INFO", "EMAIL_AGENT_LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError("EMAIL_AGENT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")

    base_url = (_str(env, "http://localhost:8080", "EMAIL_PUBLIC_BASE_URL") or "").rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise SettingsError("EMAIL_PUBLIC_BASE_URL must be an http(s) URL")

    settings = Settings(
        database_url=_str(env, Settings.database_url, "EMAIL_LOG_DATABASE_URL")
        or Settings.database_url,
        smtp_server=str(smtp_server) if smtp_server else None,
        smtp_port=_int(env, default_port, "SMTP_PORT", "EMAIL_SERVER_PORT", minimum=1),
        smtp_use_tls=use_tls,
        smtp_use_ssl=use_ssl,
        smtp_username=username,
        smtp_password=password,
        default_sender=_str(env, Settings.default_sender, "DEFAULT_SENDER")
        or Settings.default_sender,
        rate_limit_per_hour=_int(env, 300, "EMAIL_RATE_LIMIT", minimum=1),
        recipient_throttle_seconds=_int(env, 60, "EMAIL_RECIPIENT_THROTTLE_SECONDS"),
        bounce_suppression_days=_int(env, 30, "EMAIL_BOUNCE_SUPPRESSION_DAYS", minimum=1),
        timeout_seconds=_float(env, 30.0, "EMAIL_TIMEOUT"),
        max_retries=_int(env, 2, "EMAIL_MAX_RETRIES"),
        retry_initial_delay=_float(env, 2.0, "EMAIL_RETRY_INITIAL_DELAY"),
        retry_max_delay=_float(env, 60.0, "EMAIL_RETRY_MAX_DELAY"),
        sendgrid_api_key=_str(env, None, "SENDGRID_API_KEY"),
        sendgrid_api_base_url=_api_base_url(
            env, Settings.sendgrid_api_base_url, "SENDGRID_API_BASE_URL"
        ),
        resend_api_key=_str(env, None, "RESEND_API_KEY"),
        resend_api_base_url=_api_base_url(env, Settings.resend_api_base_url, "RESEND_API_BASE_URL"),
        sendgrid_webhook_public_key=_str(env, None, "SENDGRID_WEBHOOK_PUBLIC_KEY"),
        resend_webhook_secret=_str(env, None, "RESEND_WEBHOOK_SECRET"),
        breaker_failure_threshold=_int(env, 5, "EMAIL_BREAKER_FAILURES", minimum=1),
        breaker_window_seconds=_float(env, 300.0, "EMAIL_BREAKER_WINDOW_SECONDS"),
        breaker_cooldown_seconds=_float(env, 300.0, "EMAIL_BREAKER_COOLDOWN_SECONDS"),
        reschedule_delay_seconds=_float(env, 900.0, "EMAIL_RESCHEDULE_DELAY_SECONDS"),
        stalled_send_seconds=_int(env, 3600, "EMAIL_STALLED_SEND_SECONDS", minimum=300),
        public_base_url=base_url,
        unsubscribe_mailto=_str(env, None, "EMAIL_UNSUBSCRIBE_MAILTO"),
        unsubscribe_token_max_age_days=_int(
            env, 365, "EMAIL_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS", minimum=30
        ),
        signing_secret=_str(env, None, "EMAIL_SIGNING_SECRET"),
        attachments_dir=Path(attachments_dir) if attachments_dir else None,
        max_attachment_bytes=_int(
            env, Settings.max_attachment_bytes, "EMAIL_MAX_ATTACHMENT_BYTES", minimum=1
        ),
        check_deliverability=_bool(env, False, "EMAIL_CHECK_DELIVERABILITY"),
        outbox_dir=Path(_str(env, "outbox", "EMAIL_OUTBOX_DIR") or "outbox"),
        log_level=log_level,
        log_format=_log_format(env),
        metrics_token=_str(env, None, "EMAIL_METRICS_TOKEN"),
        cx07_on_collect=_bool(env, False, "EMAIL_CX07_ON_COLLECT"),
        complaint_rate_warn=_float(env, 0.001, "EMAIL_COMPLAINT_RATE_WARN"),
        complaint_rate_hard=_float(env, 0.003, "EMAIL_COMPLAINT_RATE_HARD"),
        unsubscribe_rate_warn=_float(env, 0.01, "EMAIL_UNSUBSCRIBE_RATE_WARN"),
        reputation_window_days=_int(env, 7, "EMAIL_REPUTATION_WINDOW_DAYS", minimum=1),
        reputation_min_sends=_int(env, 100, "EMAIL_REPUTATION_MIN_SENDS", minimum=1),
        complaint_guard=_bool(env, True, "EMAIL_COMPLAINT_GUARD"),
        console_session_minutes=_int(env, 480, "EMAIL_CONSOLE_SESSION_MINUTES", minimum=5),
        api_max_request_bytes=_int(
            env, Settings.api_max_request_bytes, "EMAIL_API_MAX_REQUEST_BYTES", minimum=1024
        ),
        celery_broker_url=_str(env, None, "CELERY_BROKER_URL"),
        dispatch_interval_seconds=_float(env, 5.0, "EMAIL_DISPATCH_INTERVAL_SECONDS"),
        send_batch_size=_int(env, 20, "EMAIL_SEND_BATCH_SIZE", minimum=1),
    )
    if settings.celery_broker_url is not None and not settings.celery_broker_url.startswith(
        ("redis://", "rediss://", "amqp://", "amqps://")
    ):
        raise SettingsError("CELERY_BROKER_URL must be a redis:// or amqp:// URL")
    if not 0 < settings.complaint_rate_warn <= settings.complaint_rate_hard < 1:
        raise SettingsError(
            "EMAIL_COMPLAINT_RATE_WARN and EMAIL_COMPLAINT_RATE_HARD must be fractions with "
            "0 < warn <= hard < 1 (0.003 is 0.3%)"
        )
    if settings.stalled_send_seconds <= settings.longest_delivery_seconds:
        raise SettingsError(
            f"EMAIL_STALLED_SEND_SECONDS must exceed the longest a delivery can take with "
            f"EMAIL_TIMEOUT, EMAIL_MAX_RETRIES and EMAIL_RETRY_MAX_DELAY as set "
            f"({settings.longest_delivery_seconds:g} s), or a send still in progress would be "
            "escalated: raise it or lower those"
        )
    return settings

"""Service configuration: one typed, immutable declaration of every setting and the
variables it is read from (a pydantic model).

Seed 000's variable names are primary; seed 001's `EMAIL_SERVER_*` names are accepted as aliases.
`load_settings()` reads the environment over the nearest `.env` file (python-dotenv); tests and
embedding code build their own `Settings(field=...)` (or `settings.replace(...)` a loaded one),
which reads nothing. Nothing else in the code base reads `os.environ` for service settings.

Why not pydantic-settings' sources: they name every value by its setting's first variable, so
a bad EMAIL_SERVER_PORT would be reported as SMTP_PORT, and a blank SMTP_SERVER would hide a
set EMAIL_SERVER_HOST. `_chosen` keeps the variable each value came from (a dozen lines).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import dotenv
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Seed 000's SMTP presets. `SMTP_PROVIDER=<name>` fills host, port and STARTTLS; explicit
# SMTP_* variables still win.
SMTP_PRESETS: dict[str, dict[str, Any]] = {
    "gmail": {"server": "smtp.gmail.com", "port": 587, "use_tls": True},
    "outlook": {"server": "smtp-mail.outlook.com", "port": 587, "use_tls": True},
    "sendgrid-smtp": {"server": "smtp.sendgrid.net", "port": 587, "use_tls": True},
}
# Seed 000's name for SendGrid's SMTP relay; `sendgrid-smtp` says which of SendGrid's two
# doors it is (SENDGRID_API_KEY is the other).
SMTP_PRESETS["sendgrid"] = SMTP_PRESETS["sendgrid-smtp"]


class SettingsError(ValueError):
    """A configuration value is missing or malformed.

    The message names the variable, never its value (it may be a secret).
    """


def _env(*names: str, **field: Any) -> Any:
    """A field read from the variable `names[0]` (or, as an alias, the others)."""
    alias = AliasChoices(*names) if len(names) > 1 else names[0]
    return Field(validation_alias=alias, **field)


def _whole_number(value: Any) -> Any:
    """Text of digits only: pydantic alone would take "3.0" for 3."""
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        raise PydanticCustomError("int_parsing", "must be an integer")
    return value


Integer = Annotated[int, BeforeValidator(_whole_number)]
Seconds = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0)]  # 0.003 is 0.3%
Count = Annotated[Integer, Field(ge=0)]
Positive = Annotated[Integer, Field(ge=1)]


class Settings(BaseModel):
    """Everything the service needs to know about its environment.

    A value that cannot be used is a `SettingsError` naming the field (or the variable it was
    given as), never its value.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",  # Settings(smpt_port=25) is a mistake: said, not ignored
        validate_by_name=True,  # Settings(smtp_port=25)
        validate_by_alias=True,  # Settings(SMTP_PORT="25"), as load_settings passes them
        str_strip_whitespace=True,
        hide_input_in_errors=True,  # a value may be a secret
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
            return
        except ValidationError as error:
            message = _message(error.errors()[0])
        raise SettingsError(message)  # outside `except`: no ValidationError in its context

    database_url: str = _env(
        "EMAIL_LOG_DATABASE_URL", default="sqlite:///email_agent.db", repr=False
    )
    # SMTP. `smtp_server=None` selects the embedded development server (aiosmtpd on 127.0.0.1).
    # The preset comes first: the fields after it take their defaults from it.
    smtp_provider: Literal["gmail", "outlook", "sendgrid", "sendgrid-smtp"] | None = _env(
        "SMTP_PROVIDER", default=None
    )
    smtp_server: str | None = _env(
        "SMTP_SERVER", "EMAIL_SERVER_HOST", default=None, validate_default=True
    )
    smtp_use_ssl: bool = _env("SMTP_USE_SSL", default=False)
    smtp_use_tls: bool = _env("SMTP_USE_TLS", default=None, validate_default=True)
    smtp_port: Integer = _env(
        "SMTP_PORT", "EMAIL_SERVER_PORT", default=None, ge=1, le=65535, validate_default=True
    )
    smtp_username: str | None = _env("SMTP_USERNAME", "EMAIL_SERVER_USER", default=None)
    smtp_password: str | None = _env(
        "SMTP_PASSWORD", "EMAIL_SERVER_PASSWORD", default=None, repr=False
    )
    default_sender: str = _env("DEFAULT_SENDER", default="noreply@example.com")
    # Limits.
    rate_limit_per_hour: Positive = _env("EMAIL_RATE_LIMIT", default=300)
    recipient_throttle_seconds: Count = _env("EMAIL_RECIPIENT_THROTTLE_SECONDS", default=60)
    bounce_suppression_days: Positive = _env("EMAIL_BOUNCE_SUPPRESSION_DAYS", default=30)
    timeout_seconds: Seconds = _env("EMAIL_TIMEOUT", default=30.0)
    max_retries: Count = _env("EMAIL_MAX_RETRIES", default=2)
    retry_initial_delay: Seconds = _env("EMAIL_RETRY_INITIAL_DELAY", default=2.0)
    # The cap on any one wait, Retry-After included.
    retry_max_delay: Seconds = _env("EMAIL_RETRY_MAX_DELAY", default=60.0)
    # HTTP API providers: each is in the chain (SendGrid -> Resend -> SMTP) when its key is set.
    sendgrid_api_key: str | None = _env("SENDGRID_API_KEY", default=None, repr=False)
    sendgrid_api_base_url: str = _env("SENDGRID_API_BASE_URL", default="https://api.sendgrid.com")
    resend_api_key: str | None = _env("RESEND_API_KEY", default=None, repr=False)
    resend_api_base_url: str = _env("RESEND_API_BASE_URL", default="https://api.resend.com")
    # Webhook verification: SendGrid's ECDSA public key (base64 DER), Resend's Svix secret.
    sendgrid_webhook_public_key: str | None = _env("SENDGRID_WEBHOOK_PUBLIC_KEY", default=None)
    resend_webhook_secret: str | None = _env("RESEND_WEBHOOK_SECRET", default=None, repr=False)
    # CX08 self-correction.
    breaker_failure_threshold: Positive = _env("EMAIL_BREAKER_FAILURES", default=5)
    breaker_window_seconds: Seconds = _env("EMAIL_BREAKER_WINDOW_SECONDS", default=300.0)
    breaker_cooldown_seconds: Seconds = _env("EMAIL_BREAKER_COOLDOWN_SECONDS", default=300.0)
    reschedule_delay_seconds: Seconds = _env("EMAIL_RESCHEDULE_DELAY_SECONDS", default=900.0)
    # A send still `sending` this long after its reservation outlived its process: escalated.
    # Far above the longest delivery (three providers, each retried, each wait capped).
    stalled_send_seconds: Integer = _env("EMAIL_STALLED_SEND_SECONDS", default=3600, ge=300)
    # Content and links.
    public_base_url: str = _env("EMAIL_PUBLIC_BASE_URL", default="http://localhost:8080")
    unsubscribe_mailto: str | None = _env("EMAIL_UNSUBSCRIBE_MAILTO", default=None)
    unsubscribe_token_max_age_days: Integer = _env(
        "EMAIL_UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS", default=365, ge=30
    )
    # It signs unsubscribe links and derives the console's session key: long enough that one
    # signed link does not give it away to an offline search.
    signing_secret: str | None = _env(
        "EMAIL_SIGNING_SECRET", default=None, repr=False, min_length=32
    )
    attachments_dir: Path | None = _env("EMAIL_ATTACHMENTS_DIR", default=None)
    max_attachment_bytes: Positive = _env("EMAIL_MAX_ATTACHMENT_BYTES", default=10 * 1024 * 1024)
    check_deliverability: bool = _env("EMAIL_CHECK_DELIVERABILITY", default=False)
    # Embedded development server.
    outbox_dir: Path = _env("EMAIL_OUTBOX_DIR", default=Path("outbox"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _env(
        "EMAIL_AGENT_LOG_LEVEL", default="INFO"
    )
    # "json": one object per line.
    log_format: Literal["plain", "json"] = _env("EMAIL_LOG_FORMAT", default="plain")
    # `/metrics` answers only a request bearing this token; unset, it is off.
    metrics_token: str | None = _env("EMAIL_METRICS_TOKEN", default=None, repr=False)
    # CX05's brand guard (seed 001, CAN-SPAM point 3; Gmail/Yahoo 2024: complaints under 0.3%,
    # aiming for 0.1%): rates over the window, judged once it holds enough sends; a hard
    # complaint rate pauses new sends until an operator lifts it, unless the guard is off.
    complaint_rate_warn: Fraction = _env("EMAIL_COMPLAINT_RATE_WARN", default=0.001)
    complaint_rate_hard: Fraction = _env("EMAIL_COMPLAINT_RATE_HARD", default=0.003)
    unsubscribe_rate_warn: Fraction = _env("EMAIL_UNSUBSCRIBE_RATE_WARN", default=0.01)
    reputation_window_days: Positive = _env("EMAIL_REPUTATION_WINDOW_DAYS", default=7)
    reputation_min_sends: Positive = _env("EMAIL_REPUTATION_MIN_SENDS", default=100)
    complaint_guard: bool = _env("EMAIL_COMPLAINT_GUARD", default=True)
    # Run CX07's engagement evaluation on the emails whose engagement changed, at each
    # collect-metrics (off: only when asked for one email).
    cx07_on_collect: bool = _env("EMAIL_CX07_ON_COLLECT", default=False)
    # A console sign-in lasts this long, however active (the cookie is signed, not stored).
    console_session_minutes: Integer = _env("EMAIL_CONSOLE_SESSION_MINUTES", default=480, ge=5)
    # HTTP API: the largest request body accepted (CX06 outputs go up to 1 MB of JSON).
    api_max_request_bytes: Integer = _env(
        "EMAIL_API_MAX_REQUEST_BYTES", default=2 * 1024 * 1024, ge=1024
    )
    # The task queue (Celery): unset, one machine runs everything itself (`main.py worker`).
    celery_broker_url: str | None = _env("CELERY_BROKER_URL", default=None, repr=False)
    # How often beat publishes what waits for a worker.
    dispatch_interval_seconds: Seconds = _env("EMAIL_DISPATCH_INTERVAL_SECONDS", default=5.0)
    # Stored sends a worker claims, hands over and records together (one task, two commits).
    send_batch_size: Positive = _env("EMAIL_SEND_BATCH_SIZE", default=20)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}

    @field_validator("smtp_server", mode="after")
    @classmethod
    def _preset_server(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value or _preset(info).get("server")

    @field_validator("smtp_use_tls", mode="before")
    @classmethod
    def _preset_tls(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return _preset(info).get("use_tls", not info.data.get("smtp_use_ssl"))
        return value

    @field_validator("smtp_port", mode="before")
    @classmethod
    def _preset_port(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return 465 if info.data.get("smtp_use_ssl") else _preset(info).get("port", 587)
        return value

    @field_validator("smtp_provider", "log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("sendgrid_api_base_url", "resend_api_base_url", mode="after")
    @classmethod
    def _api_base_url(cls, url: str) -> str:
        """An API base URL: https, or http only to this machine (local fakes), so that an API
        key never crosses a network in clear text."""
        url = url.rstrip("/")
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            host = None
        if host and (parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)):
            return url
        raise PydanticCustomError("setting", "must be an https URL (http only to localhost)")

    @field_validator("database_url", mode="after")
    @classmethod
    def _database_url(cls, url: str) -> str:
        try:
            make_url(url)
        except ArgumentError:  # its message repeats no part of the URL, which may hold a password
            raise PydanticCustomError(
                "setting",
                "must be a database URL, like sqlite:///email_agent.db or "
                "postgresql+psycopg://user@host/database",
            ) from None
        return url

    @field_validator("public_base_url", mode="after")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise PydanticCustomError("setting", "must be an http(s) URL")
        return url.rstrip("/")

    @field_validator("celery_broker_url", mode="after")
    @classmethod
    def _broker_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            raise PydanticCustomError("setting", "must be a redis:// or amqp:// URL")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = _inconsistencies(self)
        if problems:
            raise PydanticCustomError("settings", problems[0])
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (by field name), checked as a new `Settings` is. A new SMTP
        server replaces the preset's (None: the development server), not filled from it."""
        if "smtp_server" in changes:
            changes.setdefault("smtp_provider", None)
        return Settings(**{**self.model_dump(), **changes})

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


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _preset(info: ValidationInfo) -> dict[str, Any]:
    name = info.data.get("smtp_provider")
    return SMTP_PRESETS[name] if name else {}


def _inconsistencies(settings: Settings) -> list[str]:
    """What is wrong with the settings taken together (each value being fine on its own)."""
    problems = []
    if settings.smtp_use_tls and settings.smtp_use_ssl:
        problems.append("SMTP_USE_TLS and SMTP_USE_SSL cannot both be true")
    if settings.smtp_provider and not (settings.smtp_username and settings.smtp_password):
        problems.append(
            f"SMTP_PROVIDER={settings.smtp_provider} needs SMTP_USERNAME and SMTP_PASSWORD"
        )
    if not 0 < settings.complaint_rate_warn <= settings.complaint_rate_hard < 1:
        problems.append(
            "EMAIL_COMPLAINT_RATE_WARN and EMAIL_COMPLAINT_RATE_HARD must be fractions with "
            "0 < warn <= hard < 1 (0.003 is 0.3%)"
        )
    if settings.stalled_send_seconds <= settings.longest_delivery_seconds:
        problems.append(
            f"EMAIL_STALLED_SEND_SECONDS must exceed the longest a delivery can take with "
            f"EMAIL_TIMEOUT, EMAIL_MAX_RETRIES and EMAIL_RETRY_MAX_DELAY as set "
            f"({settings.longest_delivery_seconds:g} s), or a send still in progress would be "
            "escalated: raise it or lower those"
        )
    return problems


# Every variable a setting is read from, and the prefixes that make a name ours: a variable
# with one of them that is none of these is a misspelling (or a name read by some other
# service, such as SMTP_HOST), refused rather than silently ignored. EMAIL_TEST_* are the
# tests' own.
_NAMES: dict[str, list[str]] = {
    field_name: (
        list(field.validation_alias.choices)  # type: ignore[arg-type]  # all plain names
        if isinstance(field.validation_alias, AliasChoices)
        else [str(field.validation_alias)]
    )
    for field_name, field in Settings.model_fields.items()
}
VARIABLES = frozenset(name for names in _NAMES.values() for name in names)
_OURS = ("EMAIL_", "SMTP_", "SENDGRID_", "RESEND_")
# Other software's names for our settings (Django's EMAIL_HOST...), for the hint.
_THEIR_NAMES = {
    "SMTP_HOST": "SMTP_SERVER",
    "SMTP_USER": "SMTP_USERNAME",
    "SMTP_PASS": "SMTP_PASSWORD",
    "EMAIL_HOST": "SMTP_SERVER",
    "EMAIL_PORT": "SMTP_PORT",
    "EMAIL_HOST_USER": "SMTP_USERNAME",
    "EMAIL_HOST_PASSWORD": "SMTP_PASSWORD",
    "EMAIL_USE_TLS": "SMTP_USE_TLS",
    "EMAIL_USE_SSL": "SMTP_USE_SSL",
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """`Settings` from environment variables: by default the environment's, over the `.env`
    file nearest the current directory, if any, as Flask reads one (a setting the environment
    gives wins over the file's, whichever of its variables each uses); `env` instead, when given.

    Raises `SettingsError` naming the offending variable when a value cannot be used or a
    name is not one of ours, whether it came from the environment or the file.
    """
    sources = [os.environ, _dotenv_file()] if env is None else [env]
    for name in sorted(set().union(*sources)):
        if name.startswith(_OURS) and name not in VARIABLES and not name.startswith("EMAIL_TEST_"):
            raise SettingsError(f"{name} is not a setting of this service{_hint(name)}")
    return Settings(**_chosen(sources))


def _dotenv_file() -> Mapping[str, str | None]:
    """The variables of the `.env` file nearest the current directory (none without one)."""
    path = dotenv.find_dotenv(usecwd=True)
    if not path:
        return {}
    try:
        return dotenv.dotenv_values(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 text") from None
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror or error}") from None


def _chosen(sources: list[Mapping[str, str | None]]) -> dict[str, str]:
    """Each setting's value, under the variable it came from (so an error names that one):
    from the first source that gives the setting a value, and there from its first variable
    that has one. A blank value is no value."""
    chosen = {}
    for names in _NAMES.values():
        for source in sources:
            name = next((n for n in names if (source.get(n) or "").strip()), None)
            if name is not None:
                chosen[name] = source[name]
                break
    return chosen  # type: ignore[return-value]  # the None values were skipped


def _hint(name: str) -> str:
    close = [_THEIR_NAMES[name]] if name in _THEIR_NAMES else []
    close = close or difflib.get_close_matches(name, VARIABLES, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _message(error: ErrorDetails) -> str:
    """One error, in words that name the variable and never repeat its value."""
    name = ".".join(str(part) for part in error["loc"])
    context = error.get("ctx") or {}
    kind = error["type"]
    if kind in ("setting", "settings"):
        return f"{name} {error['msg']}".strip()
    if kind == "extra_forbidden":
        return f"{name} is not a setting of this service"
    if kind == "int_parsing" or kind == "int_from_float":
        return f"{name} must be an integer"
    if kind == "float_parsing":
        return f"{name} must be a number"
    if kind == "bool_parsing":
        return f"{name} must be true or false"
    if kind in ("greater_than_equal", "greater_than"):
        bound = context.get("ge", context.get("gt"))
        return f"{name} must be at least {bound:g}"
    if kind == "less_than_equal":
        return f"{name} must be at most {context['le']:g}"
    if kind == "string_too_short":
        return (
            f"{name} must be at least {context['min_length']} characters (make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if kind == "literal_error":
        choices = [c.strip(" '") for c in str(context["expected"]).replace(" or ", ", ").split(",")]
        if len(choices) > 2:
            return f"{name} must be one of {', '.join(choices)}"
        return f"{name} must be {' or '.join(choices)}"
    return f"{name} is not a valid value ({kind})"

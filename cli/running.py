"""What every command runs in: the service's settings, its log and the tools' runtime; how it
prints a result; the types of its inputs."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.exc import DBAPIError

import tools
from log_format import configure_logging
from persistence import UnusableDatabase
from settings import Settings, SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Options:
    """The group's own options, which every command reads."""

    verbose: bool = False


class CommandFailed(click.ClickException):
    """An expected failure: its message is the one line printed (as it is, on stderr)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(self.message, file=file, err=True)


def with_runtime(*, service: bool = False, sends: bool = False) -> Callable[[F], F]:
    """Run the command with the tools configured from the environment, closed after it.

    A one-off command's log shows warnings and worse (what it prints is its result); a
    service's (`serve`, `worker`, `beat`) is at EMAIL_AGENT_LOG_LEVEL. A command that `sends`
    starts the providers first, so that one that cannot start fails the command at once.
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            start(service=service, sends=sends)
            try:
                return command(*args, **kwargs)
            finally:
                tools.shutdown()

        return run  # type: ignore[return-value]

    return decorate


def start(*, service: bool, sends: bool = False) -> Settings:
    """Load the settings, set up the log and configure the tools (and with `sends`, the
    providers): a bad setting, a database that cannot be used or a file that cannot be made
    is a `CommandFailed`.

    A runtime already built from the same settings is kept: `flask --app main COMMAND` built
    one for the app before the command starts.
    """
    try:
        settings = load_settings()
        _configure_logging(settings, verbose=verbose(), service=service)
        runtime = tools.configure(settings, unless_current=True)
        if sends:
            runtime.delivery  # noqa: B018  # built now, not on the first send
    except SettingsError as error:
        raise CommandFailed(f"Configuration error: {error}", exit_code=2) from None
    except (DBAPIError, UnusableDatabase) as error:
        reason = error.orig or error if isinstance(error, DBAPIError) else error
        raise CommandFailed(
            f"error: cannot use the database {settings.database_url_for_display}: "
            f"{_first_line(reason)}"
        ) from None
    except OSError as error:  # the SQLite file's folder, the signing secret's, the outbox
        where = f": {error.filename}" if error.filename else ""
        raise CommandFailed(f"error: {error.strerror or error}{where}") from None
    return settings


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def verbose() -> bool:
    """Whether `-v` was given."""
    context = click.get_current_context(silent=True)
    options = context.find_object(Options) if context is not None else None
    return options is not None and options.verbose  # `flask --app main` has no -v


# AutoGen logs every message it routes at INFO (about 300 lines for the demo); aiosmtpd every
# SMTP command; Alembic every migration step.
_FRAMEWORK_LOGGERS = ("autogen_core", "autogen_agentchat", "autogen_ext", "mail.log", "alembic")


def _configure_logging(settings: Settings, *, verbose: bool, service: bool) -> None:
    """The service's own lines at EMAIL_AGENT_LOG_LEVEL; the frameworks' only with `-v` or at
    DEBUG. A one-off command's log shows warnings and worse unless `-v`."""
    level = settings.log_level
    if not service and not verbose and level == "INFO":
        level = "WARNING"
    configure_logging(level, settings.log_format)
    if not verbose and settings.log_level != "DEBUG":
        for noisy in _FRAMEWORK_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def emit(result: dict[str, Any], *, ok: bool) -> None:
    """Print a tool's result as JSON. One that failed is also one line on stderr (a
    `CommandFailed`); it prints no JSON unless it is a send's, which says what became of it."""
    if ok or "status" in result:
        print(json.dumps(result, indent=2, default=str))
    if not ok:
        raise CommandFailed(f"error: {_failure(result)}")


def _failure(result: dict[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        return f"{error.get('message')} ({error.get('code')})"
    return str(error or result.get("message") or "failed")


class JSONFile(click.ParamType):
    """A path to a file of JSON: the value is what the file holds."""

    name = "json_file"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "FILE.json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            text = Path(value).read_text(encoding="utf-8-sig")
        except OSError as error:
            self.fail(f"cannot read {value}: {error.strerror or error}", param, ctx)
        except UnicodeDecodeError:
            self.fail(f"{value} is not UTF-8 text", param, ctx)
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            self.fail(
                f"{value} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}",
                param,
                ctx,
            )


_EXAMPLE_UUID = "550e8400-e29b-41d4-a716-446655440000"


class UUIDText(click.ParamType):
    """A UUID, passed on as its canonical text (what the tools take)."""

    name = "uuid"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str | None:
        return None if isinstance(param, click.Argument) else "UUID"  # an argument: its name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            self.fail(f"{value!r} is not a UUID (like {_EXAMPLE_UUID})", param, ctx)


JSON_FILE = JSONFile()
UUID = UUIDText()

"""How the service's log lines look: the fields the code attaches, in plain text or as JSON.

The code logs with `extra={"email_id": ..., "workspace_id": ..., "provider": ...}`; the standard
formatter drops those. Here every such field is written: after the message as `key=value` in
the plain format, or as keys of one JSON object per line with `EMAIL_LOG_FORMAT=json` (for log
shippers). A field whose name says it holds a secret (a key, a token, a password, a body) is
written as `[hidden]`, whatever code attached it: a log line is read by more people than the
database is.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_WORDS = (
    "key", "token", "password", "secret", "authorization", "body", "cookie", "url", "dsn",
)  # fmt: skip
PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields the code attached to `record`, secrets hidden."""
    return {
        name: "[hidden]" if any(word in name.lower() for word in _SECRET_WORDS) else value
        for name, value in record.__dict__.items()
        if name not in _STANDARD and not name.startswith("_")
    }


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`"""

    def __init__(self) -> None:
        super().__init__(PLAIN)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():  # a message built from outside data: one line still
            record = logging.makeLogRecord({**record.__dict__, "args": None})
            record.msg = json.dumps(message)[1:-1]
        line = super().format(record)
        fields = " ".join(f"{name}={_text(value)}" for name, value in fields_of(record).items())
        if not fields:
            return line
        head, newline, trace = line.partition("\n")  # a traceback stays below its line
        return f"{head} {fields}{newline}{trace}"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: int | str, log_format: str) -> None:
    """The root logger for a command of `main.py`: `log_format` is `plain` or `json`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else PlainFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _text(value: Any) -> str:
    text = str(value.value if hasattr(value, "value") else value)  # an enum by its value
    plain = text and text.isprintable() and not any(c in text for c in ' ="')
    return text if plain else json.dumps(text)  # quoted: no line break gets through

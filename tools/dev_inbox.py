"""The development SMTP server's mail, as the console's inbox (Mailpit's shape: newest first,
one message with its headers, HTML, text, raw source and attachments).

The server keeps every workspace's mail in one folder, one `<email_id>.eml` each; a workspace
sees only the files whose id is one of its own sends. Only names that are UUIDs are opened, so
nothing outside the folder can be read through a link.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import select

from persistence import EmailExecution, workspace_scope
from tools.runtime import Runtime

_HEADERS_ONLY = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class Received:
    email_id: str
    subject: str
    to: str
    date: str
    size: int


@dataclass(frozen=True)
class Opened:
    summary: Received
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[tuple[str, str, int]]  # file name, content type, bytes
    raw: str


def received(runtime: Runtime, workspace_id: str, limit: int, offset: int) -> tuple[list, int]:
    """This workspace's received messages, newest first: one page, and how many in all."""
    files = _by_id(runtime.settings.outbox_dir)
    own = _own_ids(runtime, workspace_id, list(files))
    newest = sorted(own, key=lambda email_id: files[email_id].stat().st_mtime, reverse=True)
    page = [_summary(email_id, files[email_id]) for email_id in newest[offset : offset + limit]]
    return page, len(newest)


def open_message(runtime: Runtime, workspace_id: str, email_id: str) -> Opened | None:
    """One received message of this workspace's, or None."""
    path = _path_of(runtime.settings.outbox_dir, email_id)
    if path is None or not _own_ids(runtime, workspace_id, [email_id]):
        return None
    data = path.read_bytes()
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    return Opened(
        summary=_summary(email_id, path),
        headers=[(name, str(value)) for name, value in message.items()],
        text=text.get_content() if text is not None else None,
        html=html.get_content() if html is not None else None,
        attachments=[
            (part.get_filename() or "(unnamed)", part.get_content_type(), len(part.get_content()))
            for part in message.iter_attachments()
        ],
        raw=data.decode("utf-8", errors="replace"),
    )


def _by_id(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        path.stem: path for path in folder.glob("*.eml") if _path_of(folder, path.stem) is not None
    }


def _path_of(folder: Path, email_id: str) -> Path | None:
    try:
        canonical = str(uuid.UUID(email_id))
    except ValueError:
        return None
    path = folder / f"{canonical}.eml"
    return path if canonical == email_id and path.is_file() else None


def _own_ids(runtime: Runtime, workspace_id: str, email_ids: list[str]) -> set[str]:
    own: set[str] = set()
    with workspace_scope(workspace_id), runtime.reader.connect() as conn:
        for start in range(0, len(email_ids), 500):  # a bounded IN list per query
            chunk = email_ids[start : start + 500]
            own.update(
                conn.scalars(
                    select(EmailExecution.id).where(
                        EmailExecution.workspace_id == workspace_id, EmailExecution.id.in_(chunk)
                    )
                )
            )
    return own


def _summary(email_id: str, path: Path) -> Received:
    with path.open("rb") as handle:
        headers = _HEADERS_ONLY.parse(handle, headersonly=True)
    return Received(
        email_id=email_id,
        subject=str(headers.get("Subject", "")),
        to=str(headers.get("To", "")),
        date=str(headers.get("Date", "")),
        size=path.stat().st_size,
    )

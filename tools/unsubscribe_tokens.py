"""HMAC-signed, expiring unsubscribe tokens (itsdangerous) and the secret that signs them."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from persistence import sqlite_database_path
from settings import Settings, SettingsError
from tools.errors import ErrorCode, ToolFailure

_SALT = "email-unsubscribe-v1"


class UnsubscribeTokens:
    """Makes and reads the token in every unsubscribe link and List-Unsubscribe header."""

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._max_age = max_age_seconds

    def make(self, workspace_id: str, email: str, email_id: str | None = None) -> str:
        """A token for one address of one workspace; `email_id` names the email it came in."""
        payload = {"w": workspace_id, "e": email}
        if email_id is not None:
            payload["x"] = email_id
        return self._serializer.dumps(payload)

    def read(self, token: str) -> tuple[str, str, str | None]:
        """(workspace_id, email, email_id) from a token, or `ToolFailure` saying why not."""
        try:
            data = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired:
            raise ToolFailure(
                ErrorCode.INVALID_INPUT, "this unsubscribe link has expired", reason="expired"
            ) from None
        except BadSignature:
            raise ToolFailure(
                ErrorCode.INVALID_INPUT, "this unsubscribe link is not valid", reason="tampered"
            ) from None
        if not (
            isinstance(data, dict)
            and isinstance(data.get("w"), str)
            and isinstance(data.get("e"), str)
        ):
            raise ToolFailure(
                ErrorCode.INVALID_INPUT, "this unsubscribe link is not valid", reason="tampered"
            )
        email_id = data.get("x")
        return data["w"], data["e"], email_id if isinstance(email_id, str) else None


def resolve_signing_secret(settings: Settings) -> str:
    """`EMAIL_SIGNING_SECRET`, else a random secret generated once and kept beside the SQLite file.

    A server database (PostgreSQL) is shared by several machines, and a file on one of them
    would sign links the others reject, so there the secret must be configured.
    """
    if settings.signing_secret:
        return settings.signing_secret
    db_file = sqlite_database_path(settings.database_url)
    if db_file is None:
        if settings.database_url.startswith("sqlite"):
            return secrets.token_urlsafe(32)  # in-memory database: nothing outlives the process
        raise SettingsError(
            "EMAIL_SIGNING_SECRET must be set when the database is not a local SQLite file"
        )
    secret_file = db_file.with_name(db_file.name + ".signing-secret")
    if not secret_file.exists():
        _create_secret_file(secret_file)
    return secret_file.read_text().strip()


def _create_secret_file(path: Path) -> None:
    # Written under a temporary name and linked into place, so a process racing us reads
    # either nothing (and links its own, which fails) or the whole secret, never half of it.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

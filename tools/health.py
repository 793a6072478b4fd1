"""Whether the parts the service needs answer now: for `/readyz`, cheap and revealing nothing."""

from __future__ import annotations

import logging

from sqlalchemy import select

from persistence import Workspace, sqlite_database_path
from tools.boundary import DATABASE_ERRORS
from tools.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

_ANY_TABLE_ROW = select(Workspace.id).limit(1)


def readiness() -> dict[str, bool]:
    """Each part and whether it answers: the database, and the broker once one is configured."""
    runtime = get_runtime()
    parts = {"database": _database_answers(runtime)}
    if runtime.queue is not None:
        parts["broker"] = runtime.queue.answers()
    return parts


def _database_answers(runtime: Runtime) -> bool:
    # A SQLite file deleted under a running process still answers through the connections
    # that hold it open: it is gone all the same, and the next process would start empty.
    path = sqlite_database_path(runtime.settings.database_url)
    if path is not None and not path.exists():
        return False
    try:
        with runtime.reader.connect() as conn:
            conn.execute(_ANY_TABLE_ROW)  # the schema, not only the server
    except DATABASE_ERRORS as error:
        log.warning("database not ready", extra={"error_type": type(error).__name__})
        return False
    return True

"""SQLite as the service runs it: WAL, foreign keys, and one writer at a time.

Every writing transaction starts with `BEGIN IMMEDIATE`, so the database's write lock
serialises the read-check-insert of the send limits across threads and processes. A reading
one (`persistence.read_only`) begins deferred and never waits: in WAL mode a reader does not
block on the writer. It runs with `query_only` on, so a write on it fails as it would in
PostgreSQL's `READ ONLY` transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

# How long a writer waits for another's lock before giving up ("database is locked").
LOCK_TIMEOUT_SECONDS = 30


def sqlite_engine(url: URL, *, read_only_option: str, unsynced_option: str) -> Engine:
    """An engine for a SQLite URL (see the module's note). The options name the execution
    options that mark a transaction read-only or unsynced (`persistence.database`)."""
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": LOCK_TIMEOUT_SECONDS, "check_same_thread": False}
    }
    if url.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool
    else:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _on_connect)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        driver = connection.connection.driver_connection
        # The pragmas go straight to the driver (they cannot wait on a lock) and are set on
        # every transaction, so a pooled connection never keeps a mode for the next one.
        if options.get(read_only_option, False):
            driver.execute("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN")
            return
        driver.execute("PRAGMA query_only=OFF")
        # FULL is spelled out: a build's default for WAL mode may be NORMAL. BEGIN goes through
        # SQLAlchemy, so a lock timeout still arrives as SQLAlchemy's OperationalError.
        unsynced = options.get(unsynced_option, False)
        driver.execute("PRAGMA synchronous=NORMAL" if unsynced else "PRAGMA synchronous=FULL")
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's own logic.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

"""Engine and session factory, and bringing a database to the newest schema.

On SQLite the database's write lock serialises the read-check-insert of the send limits
across threads and processes (`persistence/sqlite.py`); PostgreSQL gets the same guarantee
from a row lock on the workspace (`tools/send/queries.py`).

A transaction on `read_only(engine)` cannot write (a write fails) and takes no write lock:
SQLite begins it deferred with `query_only` on (in WAL mode a reader never waits for the
writer), PostgreSQL as `READ ONLY`. The tools read through it, so a status lookup or an API
key check never queues behind a send.

Every commit waits for the disk (SQLite `synchronous=FULL`), except in `begin_unsynced`: there
the commit survives a crash of this process but may be lost to a power cut or an OS crash (on
PostgreSQL also to a crash of the server), until the next synchronised commit flushes it with
its own. Only for records whose loss is detected and handled (a send's outcome: see
`tools/send/record.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from persistence.sqlite import sqlite_engine
from persistence.tenancy import all_workspaces, current_scope

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision (tests/test_persistence.py checks it is Alembic's head).
# Every command starts by bringing the database up to date; one already there is told by this
# alone, without loading Alembic: 0.4 s of imports, most of a quick command's start-up.
SCHEMA_REVISION = "0015"
# Any fixed number: the PostgreSQL advisory lock that stops two processes migrating at once.
_MIGRATION_LOCK_ID = 7_311_905_551
# The execution options `begin_unsynced` and `read_only` set; read when each transaction begins.
_UNSYNCED = "unsynced_commit"
_READ_ONLY = "read_only_transactions"


class UnusableDatabase(Exception):
    """The configured database is not one this code can use: no driver is installed for it, or
    its schema is at a revision this code does not know (a newer release migrated it)."""


def make_engine(url: str) -> Engine:
    """Create an engine for `url` with the project's SQLite pragmas and transaction mode."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed, read_only_option=_READ_ONLY, unsynced_option=_UNSYNCED)
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as error:
        missing = f"no driver for {parsed.drivername} is installed ({error})"
        raise UnusableDatabase(missing) from None
    if engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgresql_begin)
    event.listen(engine, "handle_error", _failed_ping_means_reconnect)
    return engine


def _failed_ping_means_reconnect(context: ExceptionContext) -> None:
    # A pooled connection whose ping fails is replaced, whatever the driver raised: psycopg,
    # finding the socket closed mid-ping, can raise "can't change 'autocommit' now"
    # (ProgrammingError) before it marks the connection broken, and SQLAlchemy would pass that
    # on instead of reconnecting. A database that is really away then fails the reconnect.
    if context.is_pre_ping:
        context.is_disconnect = True


def _postgresql_begin(connection: Connection) -> None:
    # Transaction-local settings, in the one statement: the workspace the row-level security
    # policies show (`persistence/tenancy.py`), and an unsynced commit.
    settings = []
    scope = current_scope()
    if scope is not None:
        settings.append(("app.workspace_id", scope))
    if connection.get_execution_options().get(_UNSYNCED, False):
        settings.append(("synchronous_commit", "off"))
    if settings:
        calls = ", ".join("set_config(%s, %s, true)" for _ in settings)
        connection.exec_driver_sql(f"SELECT {calls}", tuple(v for pair in settings for v in pair))


def read_only(engine: Engine) -> Engine:
    """`engine` for transactions that only read (see the module's note); same pool. On
    PostgreSQL the driver begins them `BEGIN READ ONLY`, in the one round trip of the BEGIN
    (a `SET TRANSACTION` after it was one more for every API key check and status read)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{_READ_ONLY: True, "postgresql_readonly": True})
    return engine.execution_options(**{_READ_ONLY: True})


@contextmanager
def begin_unsynced(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()`, but the commit does not wait for the disk (see the module's note)."""
    with engine.connect() as connection:
        connection.execution_options(**{_UNSYNCED: True})
        with connection.begin():
            yield connection


# SQLite's primary result codes for a database it cannot use right now (busy or locked past
# the timeout, an I/O error, the file gone or unopenable, a full disk), as opposed to SQL or
# schema errors, which SQLite reports as OperationalError too.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 13, 14, 15, 26})  # BUSY LOCKED IOERR FULL CANTOPEN
#                                                               PROTOCOL NOTADB


def unavailable(error: BaseException) -> bool:
    """Whether a database error means the database cannot be reached or used right now (the
    server down, a connection cut, a lock held past the timeout, the pool exhausted), as
    opposed to a bug. For the first, a caller is told to try again; the second propagates."""
    if isinstance(error, PoolTimeoutError):
        return True
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    code = getattr(error.orig, "sqlite_errorcode", None)
    # PostgreSQL (psycopg) raises OperationalError only for the server or the connection.
    return code is None or (code & 0xFF) in _SQLITE_UNAVAILABLE


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def sqlite_database_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def upgrade_to_head(engine: Engine) -> None:
    """Apply every Alembic migration the database has not had yet (over every workspace's
    rows: a migration is not a tenant's)."""
    if schema_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with all_workspaces(), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as error:
            raise UnusableDatabase(f"cannot bring its schema up to date: {error}") from None


def bypasses_row_security(engine: Engine) -> bool:
    """Whether the engine's role skips PostgreSQL's row-level security (a superuser, or a role
    with BYPASSRLS): workspace isolation then rests on the code's filters alone."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as connection:
        return bool(
            connection.scalar(
                text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        )


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at; None before the first."""
    with all_workspaces(), engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.scalar(text("SELECT version_num FROM alembic_version"))

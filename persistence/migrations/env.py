"""Alembic environment: runs on the connection `upgrade_to_head` hands over, or on
`EMAIL_LOG_DATABASE_URL` when invoked from the `alembic` command line (see alembic.ini)."""

from alembic import context

from persistence.database import make_engine
from persistence.models import Base
from persistence.tenancy import all_workspaces
from settings import load_settings

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(load_settings().database_url)
    with all_workspaces(), engine.begin() as conn:  # as `upgrade_to_head`: no tenant's
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations()

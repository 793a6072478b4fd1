"""Which workspace's rows a transaction may see: the scope PostgreSQL's row-level security
enforces (migration 0015).

Every table holding a workspace's rows has a policy that shows (and lets a statement write)
only the rows whose workspace is the transaction's `app.workspace_id`. Each transaction sets
it as it begins (`persistence.database`), from the scope of the code that opened it:
- `workspace_scope(id)`: one workspace. Every tool function called with a `workspace_id`
  runs in it (`tools.boundary`), so a query there that forgets its own filter still sees
  only that workspace's rows;
- `all_workspaces()`: the work that spans workspaces by nature and says so where it runs (the
  API key lookup, the queue's dispatcher and batches, the stalled-send sweep, webhook
  matching, the service-wide metrics, migrations);
- neither: the transaction sees no workspace's rows at all.

SQLite has no row-level security: there the application's own filters are the isolation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar

# The setting's value that the policies read as "every workspace" (no workspace id is it).
ALL_WORKSPACES = "*"
_scope: ContextVar[str | None] = ContextVar("workspace_scope", default=None)


def current_scope() -> str | None:
    """The workspace id transactions begun now are limited to, `ALL_WORKSPACES`, or None."""
    return _scope.get()


@contextmanager
def workspace_scope(workspace_id: str) -> Iterator[None]:
    """Transactions begun inside see only `workspace_id`'s rows."""
    if workspace_id == ALL_WORKSPACES:  # a caller's text must never widen a scope
        raise ValueError("not a workspace id")
    token = _scope.set(workspace_id)
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def all_workspaces() -> Iterator[None]:
    """Transactions begun inside see every workspace's rows (see the module's note)."""
    token = _scope.set(ALL_WORKSPACES)
    try:
        yield
    finally:
        _scope.reset(token)


def scope_of(workspace_id: str | None) -> AbstractContextManager[None]:
    """`workspace_scope(workspace_id)`, or `all_workspaces()` without one: for a lookup by an
    id whose workspace the caller may not know (`get_email_status(email_id)`)."""
    return all_workspaces() if workspace_id is None else workspace_scope(workspace_id)

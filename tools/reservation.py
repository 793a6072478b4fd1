"""The transaction that reserves a send: begun by the pipeline, committed at the hand-over.

A send's row (status `sending`) must be durable before a provider could deliver the message,
so that a crash leaves a trace and the same send is never made twice; its commit waits for the
disk. Instead of committing before delivery starts, the pipeline passes `commit` to the
provider as `before_handover`: the SMTP provider calls it while the server answers MAIL FROM,
so the disk wait overlaps a round trip that delivers nothing.

Until it commits, the transaction holds the database's write lock (SQLite) or the workspace's
row lock (PostgreSQL). Providers therefore commit before any wait that could be long
(connecting), and the delivery chain after any failed attempt (before a backoff).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine


class Reservation:
    """One open transaction on its own connection; `commit` once, or `abandon`."""

    def __init__(self, engine: Engine) -> None:
        self.connection: Connection = engine.connect()
        try:
            self._transaction = self.connection.begin()
        except BaseException:
            self.connection.close()
            raise
        self.committed = False

    def commit(self) -> None:
        """Commit and release the connection; once committed, later calls do nothing.

        Raises what the commit raised; the transaction is then rolled back, and committing
        again raises `RuntimeError`.
        """
        if self.committed:
            return
        if self.connection.closed:
            raise RuntimeError("this reservation was rolled back")
        try:
            self._transaction.commit()
        finally:
            self.connection.close()
        self.committed = True

    def abandon(self) -> None:
        """Roll back and release the connection, unless committed (then nothing happens)."""
        if not self.committed:
            self.connection.close()

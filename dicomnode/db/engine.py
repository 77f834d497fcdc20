"""Opening the job database: an SQLAlchemy engine for SQLite (WAL, busy timeout, foreign keys) or
PostgreSQL (``postgresql+psycopg://``), the schema, and short transactions.

SQLite keeps pysqlite's default transaction handling (``BEGIN`` is sent before the first write), so a read
never holds a snapshot that a later write in the same unit would find stale; every read-then-write in this
package is written as a conditional UPDATE or an INSERT .. ON CONFLICT so that it stays atomic anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dicomnode.db.schema import upgrade_schema

SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and health lines)."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed transaction's data
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """One engine and its session factory. Build one per process (engines do not survive ``fork``)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            self.create_schema()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def create_schema(self) -> str:
        """Create or upgrade the schema to the newest revision (see ``dicomnode.db.schema``; idempotent, and safe
        when several processes or nodes start at once). Returns the revision."""
        with self.engine.begin() as connection:
            return upgrade_schema(connection)

    def session(self) -> Session:
        """A new ORM session; use ``with db.session() as s, s.begin(): ...`` for one transaction."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction, committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def insert(self, table: Any) -> Any:
        """A dialect-specific INSERT that supports ``on_conflict_do_nothing`` on SQLite and PostgreSQL."""
        return (postgresql.insert if self.is_postgres else sqlite.insert)(table)

    def retrying(self, work: Callable[[], T], attempts: int = 5) -> T:
        """Run ``work`` again when SQLite reports a lock it could not wait out (rare with WAL + busy_timeout)."""
        for attempt in range(attempts):
            try:
                return work()
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()

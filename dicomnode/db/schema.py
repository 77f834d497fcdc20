"""Schema versions: the job database is created and upgraded with alembic migrations (``db/migrations``).

At start-up (``Database(url)``, the service's main process and the CLI) the schema is brought to the newest
revision, under a PostgreSQL advisory lock so that several nodes starting at once upgrade it once:

* an empty database gets every table from the models (``create_all``) and is stamped with the newest revision
  (alembic's own recommendation for new databases: one step, and the same tables the models describe);
* a database created before schema versions existed (tables, no ``alembic_version``) is stamped with the
  baseline, then upgraded;
* a versioned database is upgraded from its revision. A database newer than this code (a node not yet updated
  next to one that is) is refused with a clear error instead of being used with a schema it does not know.

``tests/node/test_schema.py`` checks that upgrading an old database gives exactly the models' schema.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from dicomnode.db.models import Base

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"  # the schema as ``create_all`` made it before versions existed
POSTGRES_LOCK_KEY = 4242424242  # serialises upgrades from nodes starting at once


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this version of the node."""


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts (read once per process: they do not change while it runs)."""
    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    """The newest revision this code knows."""
    return _scripts().get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None if it is not versioned (empty, or older than versions)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(connection: Connection) -> str:
    """Create or upgrade the schema on ``connection`` (inside its transaction); returns the revision it is at."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POSTGRES_LOCK_KEY})")
    config = alembic_config(connection)
    revision = current_revision(connection)
    head = head_revision()
    if revision is None:
        if not inspect(connection).has_table("jobs"):
            Base.metadata.create_all(connection)
            command.stamp(config, head)
            return head
        command.stamp(config, BASELINE)
        revision = BASELINE
    known = {script.revision for script in _scripts().walk_revisions()}
    if revision not in known:
        raise SchemaError(f"the database is at schema revision {revision!r}, which this version of the node does "
                          f"not know (newest known: {head}); update this node before pointing it at this "
                          "database")
    if revision != head:
        command.upgrade(config, "head")
    return head

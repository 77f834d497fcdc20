"""Schema versions on SQLite and on a real PostgreSQL server: a new database is created at the newest revision,
a database from before versions existed is upgraded to exactly the models' schema, and a database newer than
the code is refused."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from dicomnode.db import Database
from dicomnode.db.models import Base
from dicomnode.db.schema import BASELINE, SchemaError, current_revision, head_revision


def _differences(db: Database) -> list:
    with db.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def _columns(db: Database, table: str) -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns(table)}


def test_a_new_database_is_created_at_the_newest_revision(db_url: str):
    db = Database(db_url)
    with db.engine.connect() as connection:
        assert current_revision(connection) == head_revision() != BASELINE
    assert _differences(db) == []
    assert db.create_schema() == head_revision(), "idempotent"
    db.dispose()


def test_a_database_from_before_versions_is_upgraded_to_the_models(db_url: str):
    db = Database(db_url)
    # Make it what a node of the previous release left: the baseline tables and no alembic_version.
    with db.engine.begin() as connection:
        from alembic import command

        from dicomnode.db.schema import alembic_config

        command.downgrade(alembic_config(connection), BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
    assert "lease_expires_at" not in _columns(db, "jobs") and "claimed_by" not in _columns(db, "deliveries")
    assert _differences(db) != []
    db.dispose()

    upgraded = Database(db_url)  # what a node's start-up does
    assert {"lease_expires_at"} <= _columns(upgraded, "jobs") and "claimed_by" in _columns(upgraded, "deliveries")
    assert _differences(upgraded) == []
    with upgraded.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    upgraded.dispose()


def test_a_database_newer_than_the_code_is_refused(db_url: str):
    db = Database(db_url)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(SchemaError, match="9999_from_the_future.*update this node"):
        db.create_schema()
    db.dispose()

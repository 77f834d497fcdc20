"""Fixtures for the node's tests: a job database on SQLite and on a real PostgreSQL server.

The PostgreSQL server is the one at ``KNEEALIGN_TEST_PG_URL`` if set (an admin URL such as
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), otherwise one started for the session with
``initdb`` + ``pg_ctl`` in a temporary directory on a free loopback port (as the ``postgres`` user when the
tests run as root). Each test gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from dicomnode.db import Database
from tests.conftest import free_port, require_tool


def _pg_bin() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _start_postgres() -> tuple[str, Callable[[], None]]:
    initdb = require_tool(str(_pg_bin() / "initdb"))
    pg_ctl = require_tool(str(_pg_bin() / "pg_ctl"))
    root = Path(tempfile.mkdtemp(prefix="kneealign-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                                 "--no-sync"]), check=True, capture_output=True, timeout=120)
    options = f"-k {root} -p {port} -h 127.0.0.1 -F -c max_connections=60"
    subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                                 "-t", "60", "start"]), check=True, capture_output=True, timeout=90)

    def stop() -> None:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """An admin URL of a running PostgreSQL server (started for the session unless given by env)."""
    url = os.environ.get("KNEEALIGN_TEST_PG_URL")
    if url:
        yield url
        return
    url, stop = _start_postgres()
    try:
        yield url
    finally:
        stop()


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import psycopg

    name = f"kneealign_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_dsn(pg_admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_psycopg_dsn(pg_admin_url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite (WAL) and on a real PostgreSQL server."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def tiny_weights(shipped_weights: Path) -> Path:
    """The shipped weights: small enough to run fast, and a real model that finds synthetic knees
    (an untrained bundle finds no knee at all and every image would be skipped)."""
    return shipped_weights


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        database.dispose()

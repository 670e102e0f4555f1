"""Engine and sessions for the control-plane database: a SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from afs.control.models import Base


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here (the driver that is installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # the API and the workers read while another writes
        # WAL with NORMAL: no fsync per commit (quota checks), still safe against process crashes; a power
        # loss may forget the last commits, not corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class Database:
    """One engine and session factory per process; ``create_schema`` is idempotent."""

    def __init__(self, url: str) -> None:
        url = normalise_url(url)
        self.engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url, pool_pre_ping=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_schema(self) -> Database:
        """Create missing tables; a second process doing the same at the same moment is harmless."""
        try:
            Base.metadata.create_all(self.engine)
        except DBAPIError:  # lost the race to create a table: everything exists now
            Base.metadata.create_all(self.engine)
        return self

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def insert(self, table: Table) -> Any:
        """An INSERT that supports ``on_conflict_do_update`` and ``returning`` on either database."""
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)

    def close(self) -> None:
        self.engine.dispose()

"""Fixtures for the API and control-plane tests: every test that takes ``database_url`` runs on
SQLite and on PostgreSQL (a fresh database per run, a fresh schema per fixture; skipped only when
no PostgreSQL server answers at AFS_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

with warnings.catch_warnings():  # starlette's TestClient would rather have httpx2; httpx is what we ship
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy.engine import make_url

from afs.api.app import create_app
from afs.broker import free_port
from afs.config import Settings
from afs.control.db import Database
from afs.control.users import create_user, issue_token

REPO = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("AFS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DATABASES = ["sqlite", "postgresql"]
SELECTIVE = '''"""Every 40th source."""
def filter(alert):
    return alert["diaSourceId"] % 40 == 0
'''
EVERYTHING = 'def filter(alert):\n    return True\n'


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this run and dropped after it."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error}")
    name = f"afs_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def database_url_for(request: pytest.FixtureRequest, kind: str, directory: Path) -> str:
    """An empty control-plane database of this kind: a SQLite file, or a new PostgreSQL schema."""
    if kind == "sqlite":
        return f"sqlite:///{directory}/afs.db"
    base = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url_for(request, request.param, tmp_path)


def make_settings(database_url: str, directory: Path, **overrides: object) -> Settings:
    """Settings for a test: its own database and directories, small samples, no Kafka listening."""
    values: dict[str, object] = dict(
        database_url=database_url, archive_dir=directory / "archive", jobs_dir=directory / "jobs",
        ppdb_path=directory / "ppdb.duckdb",
        filters_dir=REPO / "filters", dry_run_alerts=200,
        kafka_bootstrap=f"127.0.0.1:{free_port()}", credentials_file=directory / "credentials.json")
    return Settings(**(values | overrides))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@dataclass
class Api:
    """A running app (lifespan entered), its database, and ways to make users."""

    client: TestClient
    db: Database
    settings: Settings

    def user(self, name: str, *, admin: bool = False, cap: int | None = None) -> dict[str, str]:
        """Create a user; the Authorization header of their first token."""
        with self.db.transaction() as session:
            user = create_user(session, name, admin=admin, max_matches_per_visit=cap)
            _, token = issue_token(session, user)
        return {"Authorization": f"Bearer {token}"}

    def upload(self, headers: dict[str, str], source: str = SELECTIVE, name: str | None = None) -> dict:
        response = self.client.post("/v1/filters", headers=headers, json={"source": source, "name": name})
        assert response.status_code == 201, response.text
        return response.json()


def running_api(settings: Settings) -> Iterator[Api]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield Api(client, app.state.db, settings)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    yield from running_api(settings)


@pytest.fixture(scope="module", params=DATABASES)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database per kind for a whole module."""
    return database_url_for(request, request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="module")
def module_api(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app per database kind for a whole module (the authorization matrix)."""
    yield from running_api(make_settings(module_database_url, tmp_path_factory.mktemp("api")))


@pytest.fixture(scope="session")
def settings_for() -> object:
    """``make_settings`` for tests that build their own (module-scoped, with a broker...)."""
    return make_settings

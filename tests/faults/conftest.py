"""Fault tests run against a PostgreSQL-backed Dagster instance, as self-hosted deployments do.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, as `tests/e2e/test_postgres_instance.py`); each test
gets its own database, dropped afterwards, so tests running in parallel never share one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture
def pg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A DAGSTER_HOME whose instance stores runs, events and pools in a fresh PostgreSQL database."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", **PG)
    except psycopg2.OperationalError as e:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({e}); start it (see .ci/run)")
    admin.autocommit = True
    name = f"mlops_faults_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_db:\n"
        f"      hostname: {PG['host']}\n      port: {PG['port']}\n      username: {PG['user']}\n"
        f'      password: ""\n      db_name: {name}\n'
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MLOPS_DEMO_DATA", str(tmp_path / "demo-data"))
    yield home
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()

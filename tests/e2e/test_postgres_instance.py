"""The same loop on a PostgreSQL-backed Dagster instance, as self-hosted deployments run it.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth); `.ci/run` starts it when it is down. The test creates
and drops its own database.
"""

from __future__ import annotations

import uuid

import dagster as dg
import pytest

from mlops_dagster.registry import records

psycopg2 = pytest.importorskip("psycopg2")

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _admin():  # type: ignore[no-untyped-def]
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_database():  # type: ignore[no-untyped-def]
    try:
        conn = _admin()
    except psycopg2.OperationalError as e:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({e}); start it (see .ci/run)")
    name = f"mlops_test_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def _instance(storage, database: str) -> dg.DagsterInstance:  # type: ignore[no-untyped-def]
    (storage / "dagster.yaml").write_text(f"""
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      hostname: {PG["host"]}
      port: {PG["port"]}
      username: {PG["user"]}
      password: ""
      db_name: {database}
""")
    return dg.DagsterInstance.from_config(str(storage))


def test_loop_on_postgres_instance(storage, pg_database, demo_defs, helpers):  # type: ignore[no-untyped-def]
    instance = _instance(storage, pg_database)
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    for p in ("churn", "demand"):
        key = dg.AssetKey([p, "dataset"])
        assert helpers.range(demo_defs, instance, [key], "2026-01-01", "2026-01-10").success
    assert demo_defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    champion = records.current_champion(instance, "churn")
    assert champion is not None and champion.decision == "promote"
    instance.dispose()

    # The registry of record survives a restart: a new instance object reads the same history.
    reopened = _instance(storage, pg_database)
    assert records.current_champion(reopened, "churn") == champion
    assert reopened.get_materialized_partitions(dg.AssetKey(["demand", "dataset"])) == {
        f"2026-01-{d:02d}" for d in range(1, 11)
    }
    reopened.dispose()

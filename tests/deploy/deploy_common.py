"""What the Kubernetes and ECS tests share: a fresh PostgreSQL database, and waiting for a code server."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DAGSTER = Path(sys.executable).with_name("dagster")


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh database `<prefix>_<random>` on the local PostgreSQL, dropped afterwards; yields its name.

    Raises:
        RuntimeError: PostgreSQL is not reachable (CI starts it; see `.ci/run`).
    """
    import psycopg2

    try:
        admin = psycopg2.connect(dbname="postgres", **PG)
    except psycopg2.OperationalError as e:
        raise RuntimeError(
            f"PostgreSQL is not reachable on 127.0.0.1:5432 ({e}); start it (see .ci/run)"
        ) from e
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def wait_for_code_server(
    port: int, timeout: float = 300.0, alive: Callable[[], str | None] | None = None
) -> None:
    """Poll `dagster api grpc-health-check` until the server on 127.0.0.1:`port` answers.

    Args:
        port: The server's port.
        timeout: Seconds to wait.
        alive: Optional callable returning an error text when the server process is gone.

    Raises:
        TimeoutError: No answer in time.
        RuntimeError: `alive` reported the server gone.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check = subprocess.run(
            [str(DAGSTER), "api", "grpc-health-check", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check.returncode == 0:
            return
        gone = alive() if alive else None
        if gone:
            raise RuntimeError(f"the code server on port {port} exited:\n{gone}")
        time.sleep(1)
    raise TimeoutError(f"no code server answered on 127.0.0.1:{port} within {timeout:.0f}s")

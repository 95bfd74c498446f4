"""One champion decision at a time per pipeline: the Dagster concurrency pool of `<p>/champion`.

The champion asset is in the pool `mlops_champion_<p>`. Dagster enforces a pool only when the instance
holds a limit for it: the run worker's executor (in-process for `materialize` / `execute_in_process`
and the CLI, multiprocess for runs the default launcher or the run queue starts) claims a slot before
the champion step starts and frees it when the step ends. With no limit recorded (and no
`concurrency.pools.default_limit` in dagster.yaml) the step runs unthrottled, so every path that
starts a champion decision (the CLI, the drift sensor, the champion step itself for later runs) calls
`ensure_champion_pool`, which records the limit 1 when it is missing.

Two instance settings defeat a per-step pool and are reported instead of ignored: storage without
concurrency tables (the in-memory ephemeral instance), and `concurrency.pools.granularity: run`, where
only the run queue enforces pools and runs executed in the calling process are never throttled.

On SQLite storage (the embedded default) the pool alone is not enough: Dagster 1.13 claims a slot by
selecting a free slot row and then updating it, relying on `SELECT ... FOR UPDATE SKIP LOCKED`, which
SQLite ignores; two processes that claim at the same moment both get the single slot (seen with ten
concurrent `registry promote` runs). SQLite instances live on one machine, so the decision also holds
`decision_lock`, an advisory `flock` under the instance's root directory, from reading the champion
until its decision is recorded. On PostgreSQL or MySQL storage the pool's claim is atomic; the lock is
then per machine and costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = ".mlops_locks"

POOL_PREFIX = "mlops_champion_"


def champion_pool(pipeline: str) -> str:
    """The concurrency pool that serializes the champion decisions of `pipeline`."""
    return f"{POOL_PREFIX}{pipeline}"


@dataclass(frozen=True)
class PoolState:
    """What `ensure_champion_pool` found and did.

    Attributes:
        pool: The pool name.
        serialized: True when a champion step of this instance waits for the pool's single slot.
        problem: Why decisions are not serialized (or cannot start), for a log line; None when fine.
        holders: Run ids holding the pool's slot right now.
        per_run: True when the instance applies pools per run (only the run queue enforces them).
    """

    pool: str
    serialized: bool
    problem: str | None = None
    holders: tuple[str, ...] = ()
    per_run: bool = False


def _granularity(instance: dg.DagsterInstance) -> str | None:
    granularity = instance.get_concurrency_config().pool_config.pool_granularity
    return None if granularity is None else str(granularity.value)


def ensure_champion_pool(instance: dg.DagsterInstance, pipeline: str) -> PoolState:
    """Record the limit 1 for the champion pool of `pipeline` when the instance has none (or more).

    A limit of 0 is an operator's pause and is kept (reported as a problem: decisions wait until it is
    raised). Idempotent and cheap: one read, and one write only when the limit is missing or above 1.

    Args:
        instance: The Dagster instance the decision runs against.
        pipeline: The pipeline name.

    Returns:
        The pool's state; `problem` says why decisions are not (or cannot be) serialized.
    """
    pool = champion_pool(pipeline)
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return PoolState(
            pool,
            serialized=False,
            problem=f"this instance's storage keeps no concurrency pools, so pool {pool} cannot "
            "serialize champion decisions (use a persistent DAGSTER_HOME)",
        )
    # Dagster's limit upsert is not atomic on SQLite either (two first writers hit a UNIQUE constraint).
    with _flock(_lock_path(instance, f"pool_{pipeline}")):
        info = storage.get_concurrency_info(pool)
        if info.limit is None or info.limit > 1:
            storage.set_concurrency_slots(pool, 1)
            info = storage.get_concurrency_info(pool)
    holders = tuple(sorted({slot.run_id for slot in info.claimed_slots}))
    if _granularity(instance) == "run":
        return PoolState(
            pool,
            serialized=False,
            problem=f"this instance applies pools per run (concurrency.pools.granularity: run): only the "
            f"run queue enforces pool {pool}, never a run executed in the calling process",
            holders=holders,
            per_run=True,
        )
    if info.limit == 0:
        return PoolState(
            pool,
            serialized=True,
            problem=f"pool {pool} has limit 0 (paused): champion decisions wait until it is raised "
            f"(`dagster instance concurrency set {pool} 1`)",
            holders=holders,
        )
    return PoolState(pool, serialized=True, holders=holders)


def _lock_path(instance: dg.DagsterInstance, name: str) -> Path:
    return Path(instance.root_directory) / LOCK_DIR / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")


def decision_lock_path(instance: dg.DagsterInstance, pipeline: str) -> Path:
    """The file `decision_lock` locks: `<instance root>/.mlops_locks/champion_<pipeline>.lock`."""
    return _lock_path(instance, f"champion_{pipeline}")


@contextmanager
def decision_lock(instance: dg.DagsterInstance, pipeline: str) -> Iterator[None]:
    """Hold the champion decision lock of `pipeline` on this machine (blocks until it is free).

    Covers what the pool's slot claim cannot on SQLite (see the module docstring). Every process and
    thread opens the file itself, so `flock` excludes threads too. Where `fcntl` does not exist
    (Windows) it does nothing.
    """
    with _flock(decision_lock_path(instance, pipeline)):
        yield


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

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

Dagster frees a step's slot when the step ends, in the process that claimed it. A run whose process is
killed (kill -9, out of memory) keeps its slot, and stays STARTED: without run monitoring (and the
default run launcher has none) every later decision would wait forever. `ensure_champion_pool` frees
the claims of such runs (`free_dead_claims`) when it can prove them dead: the run is over (marked
failed or canceled by Dagster's run monitoring or an operator, or deleted), or a lease of the run is
left unlocked. A lease is a file under the instance's root directory that a live process keeps
`flock`ed and removes when it is done, so one found unlocked belongs to a process that died: the CLI
holds one (`run_lease`) for the whole run it executes, the champion step holds one for its decision
(`decision_lock(..., run_id=...)`). A run that died on another machine, or outside both leases (e.g. a
run launched by the daemon, between its claim and its decision), keeps its slot until Dagster or an
operator ends it (UI: terminate the run, or free its slot under Deployment -> Concurrency).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlops_dagster.keys import Tags

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = ".mlops_locks"

POOL_PREFIX = "mlops_champion_"

logger = logging.getLogger(__name__)


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
        freed: Runs whose claims were just freed because they can never free them (`free_dead_claims`).
    """

    pool: str
    serialized: bool
    problem: str | None = None
    holders: tuple[str, ...] = ()
    per_run: bool = False
    freed: tuple[str, ...] = ()


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
    freed = free_dead_claims(instance, pipeline)
    if freed:
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
            freed=freed,
        )
    if info.limit == 0:
        return PoolState(
            pool,
            serialized=True,
            problem=f"pool {pool} has limit 0 (paused): champion decisions wait until it is raised "
            f"(`dagster instance concurrency set {pool} 1`)",
            holders=holders,
            freed=freed,
        )
    return PoolState(pool, serialized=True, holders=holders, freed=freed)


def _lock_path(instance: dg.DagsterInstance, name: str) -> Path:
    return Path(instance.root_directory) / LOCK_DIR / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")


def decision_lock_path(instance: dg.DagsterInstance, pipeline: str) -> Path:
    """The file `decision_lock` locks: `<instance root>/.mlops_locks/champion_<pipeline>.lock`."""
    return _lock_path(instance, f"champion_{pipeline}")


@contextmanager
def decision_lock(instance: dg.DagsterInstance, pipeline: str, run_id: str | None = None) -> Iterator[None]:
    """Hold the champion decision lock of `pipeline` on this machine (blocks until it is free).

    Covers what the pool's slot claim cannot on SQLite (see the module docstring). Every process and
    thread opens the file itself, so `flock` excludes threads too. Where `fcntl` does not exist
    (Windows) it does nothing. With `run_id` (the champion step's run), the run's lease is held too,
    from before the lock is taken: if the process dies, the next decision frees the run's slot.
    """
    lease = _lease(_lock_path(instance, f"run_{run_id}")) if run_id else nullcontext()
    with lease, _flock(decision_lock_path(instance, pipeline)):
        yield


@contextmanager
def run_lease(instance: dg.DagsterInstance) -> Iterator[dict[str, str]]:
    """A lease for the runs this process executes itself; yields the run tags that name it.

    A process that runs a champion decision in-process (the CLI's `registry promote|rollback`) holds
    it from before the run claims the pool's slot until the run is over, and tags the run with it:
    if the process dies at any point, the next decision frees the run's slot (`free_dead_claims`).
    """
    token = uuid.uuid4().hex
    with _lease(_lock_path(instance, f"lease_{token}")):
        yield {Tags.LEASE: token}


def free_dead_claims(instance: dg.DagsterInstance, pipeline: str) -> tuple[str, ...]:
    """Free the champion pool claims (slots and queued steps) of runs that can never free them.

    A run's claims are freed when no lease of it is held and the run is over (a status Dagster never
    leaves, or deleted) or one of its leases was left unlocked by a process that died (see the module
    docstring). A held lease proves the run alive, whatever its status says.

    Returns:
        The run ids whose claims were freed, sorted (each is logged as a warning).
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return ()
    info = storage.get_concurrency_info(champion_pool(pipeline))
    freed = []
    for run_id in sorted({s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}):
        run = instance.get_run_by_id(run_id)
        names = [f"run_{run_id}"] + (
            [f"lease_{run.tags[Tags.LEASE]}"] if run and Tags.LEASE in run.tags else []
        )
        leases = {path: _lease_state(path) for path in (_lock_path(instance, name) for name in names)}
        if "held" in leases.values():
            continue
        broken = [path for path, state in leases.items() if state == "broken"]
        if run is None or run.is_finished or broken:
            storage.free_concurrency_slots_for_run(run_id)
            for path in broken:  # no one holds it again: the name is the run's or a one-off token
                path.unlink(missing_ok=True)
            why = "it no longer exists" if run is None else f"it is {run.status.value}"
            if run is not None and not run.is_finished:
                why = "its process died (its lease was left unlocked)"
            logger.warning(f"freed the {champion_pool(pipeline)} claims of run {run_id}: {why}")
            freed.append(run_id)
    return tuple(freed)


@contextmanager
def _lease(path: Path) -> Iterator[None]:
    """Hold `path` locked while the block runs, and remove it when the block ends (normally or not).

    Removed before it is unlocked, so a lease found unlocked (and still at its path) was left by a
    process that died inside the block.
    """
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _lease_state(path: Path) -> str | None:
    """`held` (a live process holds it), `broken` (left by a process that died) or None (no lease)."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held"
        try:
            still_there = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            still_there = False
        return "broken" if still_there else None  # removed meanwhile: its holder finished normally
    finally:
        os.close(fd)


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

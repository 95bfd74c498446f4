"""What a killed decision leaves, repaired on plain data: the pool claim it held, the record it logged.

Fast companions to `test_kill9.py` (no runs, the embedded instance): which claims of the champion
pool `free_dead_claims` frees, and how the next champion decision voids a logged decision the
instance never recorded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg

from mlops_dagster.audit import read_log, record_decision, verify_log
from mlops_dagster.keys import Tags
from mlops_dagster.registry.pool import champion_pool, ensure_champion_pool, free_dead_claims

P = "churn"
STEP = "churn__champion"
HOLDER = """
import sys, time
import dagster as dg
from mlops_dagster.registry.pool import run_lease
with dg.DagsterInstance.get() as instance, run_lease(instance) as tags:
    print(tags["mlops/lease"], flush=True)
    time.sleep(600)
"""


def _run(instance: dg.DagsterInstance, **tags: str) -> dg.DagsterRun:
    """A run in progress (STARTED), as a killed one stays."""
    run = dg.DagsterRun(
        job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED, tags=tags
    )
    return instance.add_run(run)


def _claim(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    assert instance.event_log_storage.claim_concurrency_slot(champion_pool(P), run.run_id, STEP).is_claimed


def _holders(instance: dg.DagsterInstance) -> list[str]:
    """The runs with a claim on the pool: a slot, or a step queued for one."""
    info = instance.event_log_storage.get_concurrency_info(champion_pool(P))
    return sorted({s.run_id for s in info.claimed_slots} | {s.run_id for s in info.pending_steps})


def test_a_claim_is_freed_only_when_its_run_is_proven_dead(storage: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        assert ensure_champion_pool(instance, P).serialized
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            leased = _run(instance, **{Tags.LEASE: holder.stdout.readline().strip()})
            _claim(instance, leased)
            assert free_dead_claims(instance, P) == () and _holders(instance) == [leased.run_id]  # alive
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        assert free_dead_claims(instance, P) == (leased.run_id,) and _holders(instance) == []  # lease broke

        silent = _run(instance)  # no lease: nothing proves it dead
        _claim(instance, silent)
        assert free_dead_claims(instance, P) == () and _holders(instance) == [silent.run_id]
        instance.report_run_failed(silent)  # as run monitoring or an operator does
        state = ensure_champion_pool(instance, P)  # the next decision's check frees it
        assert state.freed == (silent.run_id,) and state.holders == () and _holders(instance) == []
        assert not list((Path(instance.root_directory) / ".mlops_locks").glob("lease_*"))


def test_the_next_decision_voids_a_logged_decision_the_instance_never_recorded(storage: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        killed = _run(instance)
        record_decision(P, "promote", version="v1", previous="v0", run_id=killed.run_id)  # then it died
        assert verify_log(P, instance=instance) == []  # it may still be in progress: not reported
        instance.report_run_failed(killed)
        [problem] = verify_log(P, instance=instance)
        assert "record seq 1: promote of version v1 never took effect" in problem and "FAILURE" in problem

        nxt = _run(instance)
        record_decision(P, "keep", version="v2", previous="v0", run_id=nxt.run_id, instance=instance)
        void, keep = read_log(P)[1:]
        assert (void["action"], void["voids_seq"], void["voids_run_id"]) == ("void", 1, killed.run_id)
        assert void["run_id"] == nxt.run_id and "never took effect" in void["reasons"][0]
        assert keep["action"] == "keep"
        assert verify_log(P, instance=instance) == []  # the void names it; the keep's run is in progress

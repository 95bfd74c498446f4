"""kill -9 at 20 points inside train, promote, rollback and package runs, on a PostgreSQL-backed instance.

Each run is a forked child of `runner.py` (the libraries loaded once): `train` trains a new version
and gates it (`<p>/candidate` and `<p>/champion` in one run, in process, as a script or the daemon
launches it: without the CLI's lease); `promote` and `rollback` are the CLI (`mlops-dagster registry
promote|rollback`); `package` materializes the bento and the edge bundle. The kill points are fixed,
not random, so a failure reproduces exactly and no timing decides where a run dies: the child stops
itself (SIGSTOP) at its point and the test kills it with SIGKILL (`runner.py` arms the points).

After each kill the test checks that the champion is one known version whose files verify, that the
audit log verifies against the instance (a log cut mid-write is reported as a torn last line, and
nothing else), and then that the next run of the same kind, not killed, succeeds: the run killed
holding the champion pool's slot no longer blocks it, the torn line was cut by a visible `repair`
record, a decision logged but never stored in the instance was voided by a visible `void` record, and
the log's last champion move is the champion.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster.audit import audit_path, read_log, verify_log
from mlops_dagster.audit.verify import check_chain, instance_problems
from mlops_dagster.keys import Meta, bento_key, edge_bundle_key
from mlops_dagster.registry import records
from mlops_dagster.registry.pool import champion_pool, free_dead_claims
from mlops_dagster.registry.store import load_version
from tests.faults.churn import churn_specs
from tests.faults.runner import Runner

P = "churn"
DAYS = ["2026-01-01", "2026-01-02"]
MOVES = ("promote", "manual_promote", "rollback")
CAND, CHAMP, BENTO, EDGE = "churn__candidate", "churn__champion", "churn__bento", "churn__edge_bundle"
MAT = "ASSET_MATERIALIZATION"


def event(kind: str, step: str | None = None, when: str = "after") -> dict[str, Any]:
    """The first event `kind` (of `step`) reaching the instance, `before` it is stored or `after`."""
    return {"event": kind, "step": step, "when": when}


def call(target: str, when: str = "enter") -> dict[str, Any]:
    """A call of `mlops_dagster.<target>` (`module:function`), on `enter` or on `exit`."""
    return {"call": f"mlops_dagster.{target}", "when": when}


TEAR = {"tear_audit": True}  # the first audit append, cut 20 bytes short of its end


@dataclass(frozen=True)
class KillPoint:
    kind: str  # train | promote | rollback | package
    where: str
    point: dict[str, Any]
    tears: bool = False  # the audit log is left with a torn last line
    voids: bool = False  # a decision is logged that the instance never records
    unproven: bool = False  # the slot is held and nothing proves the run dead: run monitoring ends it


TRAIN = [
    KillPoint("train", "training step started", event("STEP_START", CAND)),
    KillPoint("train", "new version stored locally, not yet mirrored", call("registry.mirror:publish")),
    KillPoint("train", "candidate recorded, gate not started", event(MAT, CAND)),
    KillPoint("train", "mid-write of the gate's audit record", TEAR, tears=True),
    KillPoint(
        "train", "gate step holds the slot, no decision yet", event("STEP_START", CHAMP), unproven=True
    ),
]
PROMOTE = [
    KillPoint("promote", "decision logged, its event not stored", event(MAT, CHAMP, "before"), voids=True),
    KillPoint("promote", "mid-write of the audit record", TEAR, tears=True),
    KillPoint("promote", "decision stored, step not finished", event(MAT, CHAMP)),
    KillPoint("promote", "step succeeded, slot not yet freed", event("STEP_SUCCESS", CHAMP)),
    KillPoint("promote", "slot claimed, decision not started", event("STEP_START", CHAMP)),
]
ROLLBACK = [
    KillPoint("rollback", "run started, no step yet", event("RUN_START")),
    KillPoint("rollback", "loading the rollback target", call("registry.store:load_version")),
    KillPoint("rollback", "mid-write of the audit record", TEAR, tears=True),
    KillPoint("rollback", "decision logged, its event not stored", event(MAT, CHAMP, "before"), voids=True),
    KillPoint("rollback", "decision stored, step not finished", event(MAT, CHAMP)),
]
PACKAGE = [
    KillPoint("package", "bento step started", event("STEP_START", BENTO)),
    KillPoint("package", "bento built, not recorded", call("packaging.bento:build_bento", "exit")),
    KillPoint("package", "bento recorded, edge bundle not started", event(MAT, BENTO)),
    KillPoint(
        "package",
        "edge folder published, not recorded",
        call("factory.packaging:_publish_edge_folder", "exit"),
    ),
    KillPoint("package", "edge bundle event about to be stored", event(MAT, EDGE, "before")),
]
KILL_POINTS = [p for cycle in zip(TRAIN, PROMOTE, ROLLBACK, PACKAGE, strict=True) for p in cycle]


def _materialize(specs: Path, *keys: str) -> dict[str, Any]:
    return {"what": "materialize", "specs": str(specs), "keys": list(keys)}


def _request(kind: str, specs: Path, version: str | None = None) -> dict[str, Any]:
    """The run of `kind`; `train` records the champion pool's limit first, as the drift sensor does."""
    if kind == "train":
        return {**_materialize(specs, "churn/candidate", "churn/champion"), "pool": P}
    if kind == "package":
        return _materialize(specs, "churn/bento", "churn/edge_bundle")
    args = ["registry", kind, P, *([version] if version else []), "--specs", str(specs)]
    return {"what": "cli", "args": args}


def _champion(instance: dg.DagsterInstance) -> records.VersionRecord:
    champion = records.current_champion(instance, P)
    assert champion is not None
    return champion


def _known(instance: dg.DagsterInstance) -> set[str]:
    return {r.version for r in records.candidate_history(instance, P, limit=1000)}


def _claims(instance: dg.DagsterInstance, run_id: str | None = None) -> list[str]:
    info = instance.event_log_storage.get_concurrency_info(champion_pool(P))
    held = [s.run_id for s in info.claimed_slots] + [s.run_id for s in info.pending_steps]
    return [r for r in held if run_id in (None, r)]


def _last_move(log: list[dict[str, Any]]) -> dict[str, Any]:
    voided = {r.get("voids_seq") for r in log if r["action"] == "void"}
    return [r for r in log if r["action"] in MOVES and r["seq"] not in voided][-1]


def _after_kill(instance: dg.DagsterInstance, kp: KillPoint) -> dict[str, Any]:
    """The state a kill left, checked: one verified champion, and a log that is whole or torn at its end."""
    run = instance.get_runs(limit=1)[0]
    assert not run.is_finished, f"{kp}: the killed run {run.run_id} is {run.status}"
    champion = _champion(instance)
    assert champion.version in _known(instance), champion
    load_version(P, champion.version, champion.sha256)  # its files verify against the recorded sha256
    path = audit_path(P)
    check = check_chain(path)
    torn = b""
    if kp.tears:
        assert len(check.problems) == 1 and "torn last line" in check.problems[0], check.problems
        torn = path.read_bytes().rsplit(b"\n", 1)[1]
    else:
        assert check.problems == [], check.problems
    assert instance_problems(instance, P, path, check) == []
    held = bool(_claims(instance, run.run_id))
    if kp.unproven:
        # Killed between its claim and its decision, launched without a lease: nothing proves it dead,
        # so its slot stays; Dagster's run monitoring (simulated here) or an operator ends the run.
        assert held and free_dead_claims(instance, P) == () and _claims(instance, run.run_id)
        instance.report_run_failed(run, "run worker died (marked by run monitoring in a deployment)")
    return {"run": run.run_id, "records": check.records, "torn": torn, "held": held}


def _after_recovery(instance: dg.DagsterInstance, kp: KillPoint, killed: dict[str, Any], log: str) -> str:
    """The next run succeeded (`log`): the log verifies, shows its repairs, its last move is the champion."""
    if killed["held"]:  # the next run freed the killed run's claim, and said so
        assert f"from run {killed['run']}" in log or f"freed=('{killed['run']}'" in log, log[-3000:]
    assert verify_log(P, instance=instance) == []
    new = read_log(P)[killed["records"] :]
    if kp.tears:
        repair = new[0]
        assert repair["action"] == "repair" and repair["dropped_bytes"] == len(killed["torn"]), new
    voids = [r for r in new if r["action"] == "void"]
    assert [r["voids_run_id"] for r in voids] == ([killed["run"]] if kp.voids else []), voids
    champion = _champion(instance)
    assert champion.version in _known(instance) and _last_move(read_log(P))["version"] == champion.version
    load_version(P, champion.version, champion.sha256)
    assert _claims(instance) == []
    if kp.kind == "package":
        for key in (bento_key(P), edge_bundle_key(P)):
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization is not None
            assert event.asset_materialization.metadata[Meta.VERSION].value == champion.version
    notes = [f"torn {len(killed['torn'])} B -> repair"] if kp.tears else []
    notes += ["orphan decision -> void"] if kp.voids else []
    if killed["held"]:
        notes.append("slot held, run marked failed -> freed" if kp.unproven else "slot held -> freed")
    return ", ".join(notes) or "-"


def test_kill9_at_twenty_points(pg_home: Path, tmp_path: Path) -> None:
    base = churn_specs(tmp_path / "specs-base", max_iter=5)
    instance = dg.DagsterInstance.get()  # the test's own view, opened once (PostgreSQL reads are fresh)
    with Runner(tmp_path) as runner, instance:
        for day in DAYS:
            runner.ok({**_materialize(base, "churn/dataset"), "partition": day})
        runner.ok(_materialize(base, "features/customer_activity", "churn/training_set"))
        runner.ok(_request("train", base))  # the first champion
        print(f"\nkill points (fixed; runs in {tmp_path}):")
        for i, kp in enumerate(KILL_POINTS):
            specs = base
            if kp.kind == "train":  # each training makes a new version, killed then trained again
                specs = churn_specs(tmp_path / f"specs-train-{i}", max_iter=6 + i)
            if kp.kind == "rollback":  # the killed run may roll back already: two must be possible
                while not _two_rollbacks_possible(instance):
                    runner.ok(_request("promote", base, _other_version(instance)))
            request = _request(kp.kind, specs, _other_version(instance) if kp.kind == "promote" else None)
            killed_run = runner.run(request, kill=kp.point)
            assert killed_run.stopped, f"{kp}: the kill point was never reached:\n{killed_run.log[-3000:]}"
            assert killed_run.exit == -signal.SIGKILL
            killed = _after_kill(instance, kp)
            if kp.kind == "promote":  # the killed promotion may have moved the champion already
                request = _request("promote", base, _other_version(instance))
            recovered = runner.run(request)
            assert recovered.exit == 0, f"{kp}: the next run failed:\n{recovered.log[-5000:]}"
            notes = _after_recovery(instance, kp, killed, recovered.log)
            print(f"{i + 1:2d}. {kp.kind:8s} {kp.where:50s} run {killed['run'][:8]}: {notes}")
        assert verify_log(P, instance=instance) == []
    log = read_log(P)
    assert sum(r["action"] == "repair" for r in log) == sum(kp.tears for kp in KILL_POINTS)
    assert sum(r["action"] == "void" for r in log) == sum(kp.voids for kp in KILL_POINTS)


def _other_version(instance: dg.DagsterInstance) -> str:
    """The newest trained version that is not the champion."""
    current = _champion(instance).version
    return next(r.version for r in records.candidate_history(instance, P, limit=1000) if r.version != current)


def _two_rollbacks_possible(instance: dg.DagsterInstance) -> bool:
    history = records.champion_history(instance, P, limit=1000)
    target = records.rollback_target(history)
    if target is None:
        return False
    done = replace(target, decision="rollback", timestamp=history[0].timestamp + 1)
    return records.rollback_target([done, *history]) is not None

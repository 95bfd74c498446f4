"""Ten `registry promote` processes at once against one instance: the decisions form one chain.

Each process is the real CLI (`python -m mlops_dagster.cli`) launching a real run of `churn/champion`.
They all load first, then start together (they wait for a go-file), so without the champion pool every
decision reads the same champion and records it as its previous one. With the pool (limit 1, recorded
by the CLI), each decision reads the champion while it holds the slot: every successful promotion records
the one before it, and the champion at the end is the last decision.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.audit import read_log, verify_log
from mlops_dagster.registry import records
from mlops_dagster.registry.pool import champion_pool

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DAYS = [f"2026-01-{d:02d}" for d in range(1, 11)]
REQUESTS = 10
BASE_PARAMS = "params: {max_iter: 100, random_state: 0}"
GATES = "gates:\n  min: {roc_auc: 0.70}\n  max_regression: 0.01"

WORKER = """
import os, sys, time
from pathlib import Path
from mlops_dagster.cli import main
import sklearn.ensemble, bentoml  # loaded before the start, so the runs begin together
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.02)
sys.exit(main(sys.argv[3:]))
"""


def _specs(folder: Path, *, params: str = BASE_PARAMS) -> Path:
    """The demo specs with lenient gates (every distinct version passes) and the given model params."""
    shutil.copytree(PIPELINES, folder)
    churn = folder / "churn.yaml"
    text = churn.read_text()
    assert BASE_PARAMS in text and GATES in text
    churn.write_text(
        text.replace(BASE_PARAMS, params).replace(GATES, "gates:\n  min: {}\n  max_regression: 1.0")
    )
    return folder


def _materialize(defs: dg.Definitions, selection: object, partition: str | None = None) -> None:
    with warnings.catch_warnings(), dg.DagsterInstance.get() as instance:
        warnings.simplefilter("ignore")
        result = dg.materialize(
            list(defs.assets),
            selection=selection,
            instance=instance,
            resources=defs.resources,
            run_config=QUIET,
            partition_key=partition,
        )
    assert result.success


def _train_versions(tmp_path: Path, n: int) -> list[str]:
    """`n` distinct candidate versions of churn (no champion yet)."""
    defs = build_definitions(_specs(tmp_path / "base"))
    for day in DAYS:
        _materialize(defs, [dg.AssetKey(["churn", "dataset"])], partition=day)
    _materialize(
        defs,
        [dg.AssetKey(["features", "customer_activity"]), dg.AssetKey(["churn", "training_set"])],
    )
    versions = []
    for i in range(n):
        specs = _specs(tmp_path / f"v{i}", params=f"params: {{max_iter: {5 + i}, random_state: 0}}")
        _materialize(build_definitions(specs), [dg.AssetKey(["churn", "candidate"])])
        with dg.DagsterInstance.get() as instance:
            latest = records.latest_candidate(instance, "churn")
        assert latest is not None
        versions.append(latest.version)
    assert len(set(versions)) == n, versions
    return versions


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every worker has written its ready file (or one of them died)."""
    while not all(p.exists() for p in paths):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            out, err = dead[0].communicate()
            pytest.fail(f"a promote process exited before the start: {err}")
        time.sleep(0.05)


def test_ten_concurrent_promotions_form_one_chain(storage: Path, tmp_path: Path) -> None:
    versions = _train_versions(tmp_path, REQUESTS)
    specs = tmp_path / "base"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(REQUESTS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(ready[i]),
                str(go),
                *("registry", "promote", "churn", version, "--specs", str(specs)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, version in enumerate(versions)
    ]
    try:
        _wait_for(ready, procs)
        go.write_text("go")
        outcomes = [(p.wait(timeout=1800), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    succeeded: dict[str, str] = {}  # run id -> version, from each CLI's own report
    printed: dict[str, str] = {}  # run id -> what that CLI printed
    for version, (code, out, err) in zip(versions, outcomes, strict=True):
        assert "Traceback" not in err, err
        if code == 0:
            match = re.search(r"^run ([0-9a-f-]{36}) \(promote churn\) succeeded", out, re.MULTILINE)
            assert match and f"champion of churn is now {version}" in out, out
            succeeded[match.group(1)] = version
            printed[match.group(1)] = out
    assert succeeded, [o[2] for o in outcomes]

    with dg.DagsterInstance.get() as instance:
        chain = records.champion_history(instance, "churn", limit=100)[::-1]  # oldest first
        current = records.current_champion(instance, "churn")
        pool = instance.event_log_storage.get_concurrency_info(champion_pool("churn"))
    # Exactly the successful runs moved the champion, and each recorded the champion before it.
    assert {r.run_id: r.version for r in chain} == succeeded
    assert [r.previous or None for r in chain] == [None, *(r.version for r in chain[:-1])]
    previous = [r.previous for r in chain]
    assert len(set(previous)) == len(previous)  # no two decisions read the same champion
    assert current is not None and current.version == chain[-1].version
    # Every CLI printed the previous champion its own decision recorded.
    for r in chain:
        assert f"champion of churn is now {r.version} (was {r.previous or '(none)'})" in printed[r.run_id]
    assert pool.limit == 1 and not pool.claimed_slots  # the CLI set the limit; every slot was freed
    # The audit log holds the same chain, in the same order, unbroken; its last decision is the champion.
    with dg.DagsterInstance.get() as instance:
        assert verify_log("churn", instance=instance) == []
    moves = [r for r in read_log("churn") if r["action"] in ("promote", "manual_promote", "rollback")]
    assert [(r["run_id"], r["version"], r["previous"]) for r in moves] == [
        (r.run_id, r.version, r.previous or None) for r in chain
    ]
    assert moves[-1]["version"] == current.version

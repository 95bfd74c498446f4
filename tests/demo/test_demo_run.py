"""`make demo` end to end, as a user runs it: the timeline tells the whole loop, the bad release included.

The bad-release day: the churn history is re-delivered with a leak, the weekly retrain promotes a model
that scores 1.0 on its (leaky) holdout, the next live days score it badly against the late labels,
and the performance sensor rolls it back by itself; the packages follow the champion back.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mlops_dagster.keys import Meta

ROOT = Path(__file__).resolve().parents[2]


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None, f"{key} not materialized"
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_demo_rolls_back_a_bad_release_by_itself(storage: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(storage),
        "BENTOML_HOME": str(storage / "bentoml"),
        "MLOPS_DEMO_DATA": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-m", "assets.demo"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    timeline = run.stdout.split("\nTimeline\n", 1)[1]

    assert "churn__drift_sensor fired" in timeline and "REFUSED" in timeline
    before = re.findall(r"churn: champion (\w{12}) \(promote, trigger drift;", timeline)
    released = re.search(
        r"weekly schedule\): churn: champion (\w{12}) \(promote, trigger schedule; holdout roc_auc=(\S+)\)",
        timeline,
    )
    assert before and released, timeline
    assert float(released.group(2)) >= 0.95  # the leak makes it look excellent offline
    live = [float(v) for v in re.findall(r"churn/live_performance \S+: live roc_auc=(\S+) on", timeline)]
    assert len(live) >= 2 and max(live[-2:]) < 0.65  # ... and bad in service
    rolled = re.search(r"ROLLED BACK (\w{12}) -> (\w{12}) by itself", timeline)
    assert rolled, timeline
    assert rolled.group(1) == released.group(1) and rolled.group(2) == before[-1]
    assert f"churn__packaging_sensor: champion {before[-1]} packaged" in timeline

    with dg.DagsterInstance.get() as instance:
        from mlops_dagster.registry.records import current_champion

        champion = current_champion(instance, "churn")
        assert champion is not None and champion.version.startswith(before[-1])
        assert (champion.decision, champion.trigger) == ("rollback", "performance")
        for asset in ("bento", "edge_bundle"):  # the packages returned to that version too
            assert _latest(instance, dg.AssetKey(["churn", asset]))[Meta.VERSION] == champion.version
    audit = subprocess.run(
        [sys.executable, "-m", "mlops_dagster.cli", "audit", "verify", "churn"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr

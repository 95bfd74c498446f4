"""The champion pool and lock: the limit every decision path records, and what it reports."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.registry.pool import (
    champion_pool,
    decision_lock,
    decision_lock_path,
    ensure_champion_pool,
)

ROOT = Path(__file__).resolve().parents[2]


def _instance(home: Path, yaml: str = "") -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + yaml)
    return dg.DagsterInstance.from_config(str(home))


def test_every_champion_asset_is_in_its_pipeline_pool(storage: Path) -> None:
    defs = build_definitions(ROOT / "pipelines")
    for name in ("churn", "demand"):
        assets_def = defs.resolve_assets_def(dg.AssetKey([name, "champion"]))
        assert assets_def.op.pool == champion_pool(name) == f"mlops_champion_{name}"


def test_ensure_records_limit_one_and_keeps_a_pause(tmp_path: Path) -> None:
    with _instance(tmp_path / "home") as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_info("mlops_champion_churn").limit is None
        state = ensure_champion_pool(instance, "churn")
        assert state.serialized and state.problem is None and not state.per_run
        assert storage.get_concurrency_info("mlops_champion_churn").limit == 1
        assert ensure_champion_pool(instance, "churn") == state  # idempotent

        storage.set_concurrency_slots("mlops_champion_churn", 4)  # more than one: brought back to 1
        ensure_champion_pool(instance, "churn")
        assert storage.get_concurrency_info("mlops_champion_churn").limit == 1

        storage.set_concurrency_slots("mlops_champion_churn", 0)  # an operator's pause is kept
        paused = ensure_champion_pool(instance, "churn")
        assert storage.get_concurrency_info("mlops_champion_churn").limit == 0
        assert paused.problem and "limit 0" in paused.problem


def test_ensure_reports_what_defeats_the_pool(tmp_path: Path) -> None:
    with _instance(tmp_path / "per-run", "concurrency:\n  pools:\n    granularity: run\n") as instance:
        state = ensure_champion_pool(instance, "churn")
        assert state.per_run and not state.serialized and "granularity: run" in (state.problem or "")
    with dg.DagsterInstance.ephemeral() as instance:
        state = ensure_champion_pool(instance, "churn")
        assert not state.serialized and "keeps no concurrency pools" in (state.problem or "")


def test_decision_lock_excludes_another_holder(tmp_path: Path) -> None:
    import fcntl

    with _instance(tmp_path / "home") as instance:
        path = decision_lock_path(instance, "churn")
        with decision_lock(instance, "churn"):
            with path.open("a+b") as other:  # another open file: another process or thread
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert path.parent == Path(instance.root_directory) / ".mlops_locks"
        with path.open("a+b") as other:  # released: free for the next decision
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)

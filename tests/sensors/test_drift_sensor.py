"""`<p>__drift_sensor`: fires once per (partition, champion), honours cooldown, skips bad partitions."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets import feed
from mlops_dagster import build_definitions
from mlops_dagster.errors import IntegrityError
from mlops_dagster.registry import records
from mlops_dagster.registry.reference import PROFILE_FILE
from mlops_dagster.registry.store import card_path

ROOT = Path(__file__).parents[2]
DATASET = dg.AssetKey(["churn", "dataset"])


def _tick(defs, instance, cursor):  # type: ignore[no-untyped-def]
    sensor = defs.resolve_sensor_def("churn__drift_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"mlops_io_manager": defs.resources["mlops_io_manager"]}
    )
    return sensor(context)


def _land(defs, instance, day: str, scenario: str = "normal") -> bool:  # type: ignore[no-untyped-def]
    feed.write_batch("churn", day, scenario)
    return dg.materialize(
        list(defs.assets),
        selection=[DATASET],
        instance=instance,
        resources=defs.resources,
        partition_key=day,
        raise_on_error=False,
    ).success


def _defs(tmp_path: Path, cooldown: str = "6h"):  # type: ignore[no-untyped-def]
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    for name in ("churn.yaml", "demand.yaml", "features.yaml"):
        text = (ROOT / "pipelines" / name).read_text()
        (folder / name).write_text(text.replace("cooldown: 6h", f"cooldown: {cooldown}"))
    return build_definitions(folder)


def _history(defs, instance, days: int = 10) -> None:  # type: ignore[no-untyped-def]
    for d in range(1, days + 1):
        assert _land(defs, instance, f"2026-01-{d:02d}")
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success


def test_no_champion_skips_with_a_reason(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path), dg.DagsterInstance.ephemeral()
    assert isinstance(_tick(defs, instance, None), dg.SkipReason)
    assert _land(defs, instance, "2026-01-01")
    result = _tick(defs, instance, None)
    assert result.run_requests == [] and "no champion yet" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["last_storage_id"] > 0


def test_fires_once_per_partition_and_champion(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path), dg.DagsterInstance.ephemeral()
    _history(defs, instance)
    champion = records.current_champion(instance, "churn")
    first = _tick(defs, instance, None)  # the training days themselves do not drift
    assert first.run_requests == []
    assert _land(defs, instance, "2026-01-11")
    normal = _tick(defs, instance, first.cursor)
    assert normal.run_requests == []

    assert _land(defs, instance, "2026-01-12", "drift")
    fired = _tick(defs, instance, normal.cursor)
    retrain = [r for r in fired.run_requests if r.job_name == "churn__retrain"]
    report = [r for r in fired.run_requests if r.job_name == "churn__drift_report_job"]
    assert len(retrain) == 1 and len(report) == 1
    assert retrain[0].run_key == f"drift:churn:2026-01-12:{champion.version}"
    tags = retrain[0].tags
    assert tags["mlops/trigger"] == "drift" and float(tags["mlops/drift_share"]) > 0.3
    assert "monthly_charges" in tags["mlops/drifted_columns"].split(",")
    assert report[0].partition_key == "2026-01-12"
    # The same evaluation again (e.g. a retried tick) yields the same run key, which Dagster runs once.
    again = _tick(defs, instance, normal.cursor)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in fired.run_requests]
    assert isinstance(_tick(defs, instance, fired.cursor), dg.SkipReason)

    # Within the cooldown, more drift does not fire again.
    assert _land(defs, instance, "2026-01-13", "drift")
    held = _tick(defs, instance, fired.cursor)
    assert held.run_requests == []
    assert json.loads(held.cursor)["held_by_cooldown"] == [f"drift:churn:2026-01-13:{champion.version}"]


def test_zero_cooldown_fires_for_each_drifted_partition(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path, cooldown="0s"), dg.DagsterInstance.ephemeral()
    _history(defs, instance, days=8)
    cursor = _tick(defs, instance, None).cursor
    for day in ("2026-01-09", "2026-01-10"):
        assert _land(defs, instance, day, "drift")
    result = _tick(defs, instance, cursor)
    keys = sorted(r.run_key for r in result.run_requests if r.job_name == "churn__retrain")
    assert [k.split(":")[2] for k in keys] == ["2026-01-09", "2026-01-10"]


def test_never_evaluates_a_partition_that_failed_quality(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path), dg.DagsterInstance.ephemeral()
    _history(defs, instance, days=8)
    cursor = _tick(defs, instance, None).cursor
    assert not _land(defs, instance, "2026-01-09", "quality_incident")
    assert isinstance(_tick(defs, instance, cursor), dg.SkipReason)


def test_corrupt_profile_is_refused(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path), dg.DagsterInstance.ephemeral()
    _history(defs, instance, days=8)
    champion = records.current_champion(instance, "churn")
    profile = card_path("churn", champion.version).parent / PROFILE_FILE
    original = profile.read_bytes()
    try:
        profile.write_bytes(original.replace(b"0", b"1", 1))
        assert _land(defs, instance, "2026-01-09")
        with pytest.raises(IntegrityError, match="refusing"):
            _tick(defs, instance, None)
    finally:
        profile.write_bytes(original)


def test_drift_report_asset_writes_html_and_table(storage, tmp_path):  # type: ignore[no-untyped-def]
    defs, instance = _defs(tmp_path), dg.DagsterInstance.ephemeral()
    _history(defs, instance, days=6)
    assert _land(defs, instance, "2026-01-07", "drift")
    job = defs.resolve_job_def("churn__drift_report_job")
    assert job.execute_in_process(instance=instance, partition_key="2026-01-07").success
    event = instance.get_latest_materialization_event(dg.AssetKey(["churn", "drift_report"]))
    md = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    html = Path(md["mlops/report"])
    assert html.exists() and html.name == "report.html" and "2026-01-07" in str(html)
    rows = {r.data["column"]: r.data for r in md["mlops/columns"].records}
    assert set(rows) == {"tenure_months", "monthly_charges", "support_calls", "plan", "region"}
    assert rows["monthly_charges"]["drifted"] is True and md["mlops/drift_share"] > 0.3
    assert sorted(md["mlops/drifted_columns"]) == sorted(c for c, r in rows.items() if r["drifted"])

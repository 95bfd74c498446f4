"""The drift report records the drift sensor's decision, whatever the spec's drift settings.

One champion is trained on six normal demo days; day 7 is the demo's drift scenario, day 8 a normal
day, day 9 a synthetic batch where two of the five columns drift. For several `monitoring.drift`
settings (the defaults, non-default methods and thresholds, a lenient share), the sensor's decision on
each day (a retrain request, with its drift share) must equal what `churn/drift_report` records as
`mlops/dataset_drift` and `mlops/drift_share`. Before the decision was shared, the report ran Evidently
with its own defaults (drift when at least half the columns drift): it said "no drift" on day 9, which
the sensor retrained on, and "drift" on day 7 under the lenient share, where the sensor did not retrain.
The test checks that both disagreements are among its cases.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets import feed
from mlops_dagster import build_definitions, load_specs
from mlops_dagster.factory.drift_report import report_code_version
from mlops_dagster.keys import Meta
from mlops_dagster.monitoring.decision import DriftSettings, DriftSettingsError
from mlops_dagster.registry import records
from mlops_dagster.sensors.drift import build_drift_sensor

ROOT = Path(__file__).resolve().parents[2]
DATASET = dg.AssetKey(["churn", "dataset"])
REPORT = dg.AssetKey(["churn", "drift_report"])
DEFAULT_DRIFT = "drift: {max_drifted_share: 0.3, cooldown: 6h}"
TRAINING_DAYS = [f"2026-01-0{d}" for d in range(1, 7)]
NEW_DAYS = {"2026-01-07": "drift", "2026-01-08": "normal", "2026-01-09": "partial"}
PARTIAL = ["monthly_charges", "tenure_months"]  # 2 of the 5 drift columns: share 0.4

SETTINGS = {
    "defaults": "{max_drifted_share: 0.3, cooldown: 0s}",
    "methods_and_thresholds": (
        "{max_drifted_share: 0.1, cooldown: 0s, "
        "methods: {monthly_charges: psi, tenure_months: wasserstein, plan: jensenshannon, "
        "region: chisquare}, "
        "thresholds: {monthly_charges: 0.25, tenure_months: 0.02, support_calls: 0.2}}"
    ),
    "lenient": "{max_drifted_share: 0.9, cooldown: 0s, methods: {support_calls: psi}}",
}


def _specs(folder: Path, drift: str) -> Path:
    shutil.copytree(ROOT / "pipelines", folder)
    churn = folder / "churn.yaml"
    text = churn.read_text()
    assert DEFAULT_DRIFT in text
    churn.write_text(text.replace(DEFAULT_DRIFT, f"drift: {drift}"))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dg.DagsterInstance, Path]]:
    """A champion trained on six normal days, and two new quality-passed days landed after it."""
    base = tmp_path_factory.mktemp("agreement")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(base / "home"))
        mp.setenv("MLOPS_DEMO_DATA", str(base / "demo-data"))
        (base / "home").mkdir()
        instance = dg.DagsterInstance.ephemeral()
        defs = build_definitions(_specs(base / "specs", SETTINGS["defaults"]))
        days = {**dict.fromkeys(TRAINING_DAYS, "normal"), **NEW_DAYS}
        for day, scenario in days.items():
            if scenario == "partial":
                batch = feed.generate_batch("churn", day, "normal")
                batch[PARTIAL] = feed.generate_batch("churn", day, "drift")[PARTIAL].to_numpy()
                feed.batch_path("churn", day).parent.mkdir(parents=True, exist_ok=True)
                batch.to_parquet(feed.batch_path("churn", day), index=False)
            else:
                feed.write_batch("churn", day, scenario)
            assert dg.materialize(
                list(defs.assets), selection=[DATASET], instance=instance, resources=defs.resources,
                partition_key=day,
            ).success  # fmt: skip
            if day == TRAINING_DAYS[-1]:
                assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
        champion = records.current_champion(instance, "churn")
        assert champion is not None
        yield instance, base


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: Any = None) -> Any:
    sensor = sensor or defs.resolve_sensor_def("churn__drift_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=None, resources={"mlops_io_manager": defs.resources["mlops_io_manager"]}
    )
    return sensor(context)


def _report(defs: dg.Definitions, instance: dg.DagsterInstance, day: str) -> dict[str, Any]:
    job = defs.resolve_job_def("churn__drift_report_job")
    assert job.execute_in_process(instance=instance, partition_key=day).success
    event = instance.get_latest_materialization_event(REPORT)
    assert event is not None and event.dagster_event is not None
    assert event.dagster_event.partition == day
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def _head_report_verdict(instance: dg.DagsterInstance, day: str, out: Path) -> bool:
    """What the report recorded before the decision was shared: Evidently with its own defaults."""
    from mlops_dagster.io.parquet import read_parquet
    from mlops_dagster.monitoring.report import run_drift_report
    from mlops_dagster.registry.reference import load_reference_sample

    champion = records.current_champion(instance, "churn")
    assert champion is not None
    reference = load_reference_sample("churn", champion.version)
    defs = build_definitions(ROOT / "pipelines")
    current = read_parquet(defs.resources["mlops_io_manager"].path_for(DATASET, day))
    columns = [c for c in reference.columns if c in current.columns]
    summary = run_drift_report(reference, current[columns], out, columns=columns)
    return summary.dataset_drift


@pytest.mark.parametrize("case", list(SETTINGS))
def test_report_records_the_sensor_decision(
    trained: tuple[dg.DagsterInstance, Path], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, base = trained
    monkeypatch.setenv("DAGSTER_HOME", str(base / "home"))
    monkeypatch.setenv("MLOPS_DEMO_DATA", str(base / "demo-data"))
    defs = build_definitions(_specs(base / f"specs-{case}", SETTINGS[case]))
    result = _tick(defs, instance)
    fired = {
        r.tags["mlops/partition"]: float(r.tags["mlops/drift_share"])
        for r in result.run_requests
        if r.job_name == "churn__retrain"
    }
    assert set(fired) <= set(NEW_DAYS)
    if case == "defaults":
        assert set(fired) == {"2026-01-07", "2026-01-09"}  # both drifted days retrain, not the normal one
        assert fired["2026-01-09"] == 0.4
    if case == "lenient":
        assert fired == {}  # 4 of 5 columns drift on day 7: not more than 90%
    for day in NEW_DAYS:
        md = _report(defs, instance, day)
        assert md[Meta.DATASET_DRIFT] is (day in fired), (case, day, md[Meta.DRIFT_SHARE])
        if day in fired:
            assert round(md[Meta.DRIFT_SHARE], 4) == fired[day]
        rows = {r.data["column"]: r.data for r in md[Meta.DRIFT_TABLE].records}
        assert sorted(md[Meta.DRIFTED_COLUMNS]) == sorted(c for c, r in rows.items() if r["drifted"])
        assert md[Meta.DRIFT_SHARE] == pytest.approx(len(md[Meta.DRIFTED_COLUMNS]) / len(rows))
        settings = DriftSettings.from_spec(load_specs(base / f"specs-{case}")[0].monitoring.drift)
        for column, method in settings.methods.items():
            assert rows[column]["method"] == method
        for column, threshold in settings.thresholds.items():
            assert rows[column]["threshold"] == threshold
        if (case, day) in (("defaults", "2026-01-09"), ("lenient", "2026-01-07")):
            # The cases the old report got wrong: Evidently's own rule (at least half the columns).
            assert _head_report_verdict(instance, day, base / f"head-{case}") is not md[Meta.DATASET_DRIFT]


def test_report_html_is_run_with_the_spec_settings(
    trained: tuple[dg.DagsterInstance, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, base = trained
    monkeypatch.setenv("DAGSTER_HOME", str(base / "home"))
    defs = build_definitions(_specs(base / "specs-html", SETTINGS["methods_and_thresholds"]))
    md = _report(defs, instance, "2026-01-07")
    snapshot = json.loads((Path(md[Meta.DRIFT_REPORT]).parent / "report.json").read_text())
    configs = [m["config"] for m in snapshot["metrics"]]
    by_column = {c["column"]: c for c in configs if c.get("type") == "evidently:metric_v2:ValueDrift"}
    assert by_column["monthly_charges"]["method"] == "psi"
    assert by_column["monthly_charges"]["threshold"] == 0.25
    assert by_column["tenure_months"]["method"] == "wasserstein"
    assert by_column["support_calls"]["threshold"] == 0.2
    [count] = [c for c in configs if c.get("type") == "evidently:metric_v2:DriftedColumnsCount"]
    assert count["drift_share"] == 0.1


def _spec_with(drift: str, folder: Path) -> Any:
    return next(s for s in load_specs(_specs(folder, drift)) if getattr(s, "name", None) == "churn")


def test_report_version_follows_the_settings_it_uses(tmp_path: Path) -> None:
    base = report_code_version(_spec_with("{max_drifted_share: 0.3, cooldown: 6h}", tmp_path / "a"))
    same = report_code_version(
        _spec_with("{max_drifted_share: 0.3, cooldown: 1h, enabled: false}", tmp_path / "b")
    )
    assert same == base  # cooldown and enabled are the sensor's business, not the report's
    for i, drift in enumerate(
        [
            "{max_drifted_share: 0.4}",
            "{max_drifted_share: 0.3, methods: {plan: z}}",
            "{max_drifted_share: 0.3, thresholds: {plan: 0.01}}",
        ]
    ):
        assert report_code_version(_spec_with(drift, tmp_path / f"c{i}")) != base, drift


def test_bad_setting_is_reported_and_the_cursor_moves(
    trained: tuple[dg.DagsterInstance, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, base = trained
    monkeypatch.setenv("DAGSTER_HOME", str(base / "home"))
    # A known method that does not fit the data: `ks` needs numbers, `plan` holds categories.
    defs = build_definitions(
        _specs(base / "specs-ks-on-plan", "{max_drifted_share: 0.3, methods: {plan: ks}}")
    )
    result = _tick(defs, instance)
    assert result.run_requests == []
    assert json.loads(result.cursor)["last_storage_id"] > 0
    message = result.skip_reason.skip_message
    assert "monitoring.drift" in message and "'ks'" in message and "'plan'" in message
    assert "2026-01-07" in message and "2026-01-08" in message

    # An unknown method name (the spec loader refuses it; a spec built in code may still carry one).
    [spec] = [s for s in load_specs(base / "specs-ks-on-plan") if getattr(s, "name", None) == "churn"]
    drift = spec.monitoring.drift.model_copy(update={"methods": {"plan": "bogus"}})
    bad = spec.model_copy(update={"monitoring": spec.monitoring.model_copy(update={"drift": drift})})
    sensor = build_drift_sensor(
        bad, defs.resolve_job_def("churn__retrain"), defs.resolve_job_def("churn__drift_report_job")
    )
    result = _tick(defs, instance, sensor)
    assert result.run_requests == [] and json.loads(result.cursor)["last_storage_id"] > 0
    assert "monitoring.drift.methods.plan: unknown drift method 'bogus'" in result.skip_reason.skip_message


def test_settings_problems_name_the_field() -> None:
    settings = DriftSettings(max_drifted_share=1.5, methods={"a": "nope"}, thresholds={"b": float("nan")})
    assert settings.problems() == [
        "monitoring.drift.max_drifted_share: 1.5 is not between 0 and 1",
        "monitoring.drift.methods.a: unknown drift method 'nope' (choose from chisquare, jensenshannon, "
        "ks, psi, wasserstein, z)",
        "monitoring.drift.thresholds.b: nan is not a finite number >= 0",
    ]
    with pytest.raises(DriftSettingsError, match="methods.a"):
        settings.check()
    assert DriftSettings().problems() == []

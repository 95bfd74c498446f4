"""`churn__packaging_sensor` keeps the packaging on the champion: it compares the version the bento and
the edge bundle record with the champion's and requests them when they differ, once per version, again
after a failed run, and not while a live run is packaging (but despite a run that died mid-way)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster.registry import records

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
PACKAGING = [K(["churn", "bento"]), K(["churn", "edge_bundle"])]
SENSOR = "churn__packaging_sensor"


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: Any = None) -> Any:
    sensor = sensor or defs.resolve_sensor_def(SENSOR)
    return sensor(dg.build_sensor_context(instance=instance, definitions=defs))


def _champion(defs: dg.Definitions, instance: dg.DagsterInstance, **config: object) -> None:
    result = dg.materialize(
        list(defs.assets),
        selection=[K(["churn", "champion"])],
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"churn__champion": {"config": config}}} if config else None,
    )
    assert result.success


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest, **kw: Any) -> bool:
    """What the daemon does with the request: a run of its assets, with its tags."""
    return dg.materialize(
        list(defs.assets),
        selection=list(request.asset_selection or []),
        instance=instance,
        resources=defs.resources,
        tags=dict(request.tags),
        raise_on_error=False,
        **kw,
    ).success


def _packaged(instance: dg.DagsterInstance) -> set[str | None]:
    from mlops_dagster.sensors.packaging import packaged_version

    return {packaged_version(instance, key) for key in PACKAGING}


def test_the_sensor_is_declared_running(demo_defs):  # type: ignore[no-untyped-def]
    sensor = demo_defs.resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert set(sensor.asset_selection.resolve(demo_defs.resolve_asset_graph())) == set(PACKAGING)
    for key in PACKAGING:  # one mechanism: no automation condition that a second sensor would act on
        assert demo_defs.resolve_asset_graph().get(key).automation_condition is None


def test_packaging_follows_promote_rollback_and_failures(demo_defs, helpers):  # type: ignore[no-untyped-def]
    from mlops_dagster.sensors.packaging import build_packaging_sensor
    from mlops_dagster.spec.loader import load_specs

    defs, instance = demo_defs, dg.DagsterInstance.ephemeral()
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-08").success
    assert defs.resolve_job_def("churn__retrain").execute_in_process(instance=instance).success
    first = records.current_champion(instance, "churn")
    assert isinstance(_tick(defs, instance), dg.SkipReason)  # packaged in the retrain run

    # A keep decision changes nothing.
    _champion(defs, instance)
    assert isinstance(_tick(defs, instance), dg.SkipReason)

    # A promote by hand (a run of the champion alone, as `registry promote` does): requested once.
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-09", "2026-01-16").success
    trained = helpers.keys(defs, instance, [K(["churn", "training_set"]), K(["churn", "candidate"])])
    assert trained.success
    second = records.latest_candidate(instance, "churn")
    _champion(defs, instance, action="promote", version=second.version)
    assert records.current_champion(instance, "churn").version == second.version
    request = _tick(defs, instance)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"package:churn:{second.version}"
    assert set(request.asset_selection) == set(PACKAGING)
    assert request.tags["mlops/champion_version"] == second.version

    # The run fails (here: the bento's build breaks): retried after the back-off, with a new run key.
    from mlops_dagster.packaging import bento

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    real = bento.build_bento
    bento.build_bento = broken  # type: ignore[assignment]
    try:
        assert not _run(defs, instance, request)
    finally:
        bento.build_bento = real  # type: ignore[assignment]
    churn = next(s for s in load_specs(ROOT / "pipelines") if s.name == "churn")
    waiting = _tick(defs, instance, build_packaging_sensor(churn, retry_after=3600))
    assert isinstance(waiting, dg.SkipReason) and "retrying in" in str(waiting.skip_message)
    retry = _tick(defs, instance, build_packaging_sensor(churn, retry_after=0))
    assert isinstance(retry, dg.RunRequest) and retry.run_key == f"package:churn:{second.version}:1"
    assert set(retry.asset_selection) == {K(["churn", "bento"])}  # the edge bundle is already at it
    assert _run(defs, instance, retry)
    assert _packaged(instance) == {second.version}
    assert isinstance(_tick(defs, instance), dg.SkipReason)

    # A rollback changes the champion too.
    _champion(defs, instance, action="rollback")
    assert records.current_champion(instance, "churn").version == first.version
    back = _tick(defs, instance)
    assert isinstance(back, dg.RunRequest) and back.run_key == f"package:churn:{first.version}"

    # A retrain in progress is waited for; one that died long ago (kill -9, still STARTED) is not.
    dead = dg.DagsterRun(
        job_name="churn__retrain",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={"mlops/pipeline": "churn"},
    )
    instance.add_run(dead)
    held = _tick(defs, instance)
    assert isinstance(held, dg.SkipReason) and dead.run_id in str(held.skip_message)
    past = _tick(defs, instance, build_packaging_sensor(churn, stuck_after=-60))
    assert isinstance(past, dg.RunRequest) and past.run_key == back.run_key
    assert _run(defs, instance, past)
    assert _packaged(instance) == {first.version}
    assert isinstance(_tick(defs, instance), dg.SkipReason)

"""`build_definitions`: specs in, one `dagster.Definitions` out."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster.alerts import Notifier
from mlops_dagster.environments import activate, apply_environment, select_environment
from mlops_dagster.errors import SpecError
from mlops_dagster.factory.automation import build_automation_sensor
from mlops_dagster.factory.champion import build_champion_asset
from mlops_dagster.factory.compute_tags import job_tags
from mlops_dagster.factory.dataset import build_dataset_asset, partitions_def
from mlops_dagster.factory.drift_report import build_drift_report_asset
from mlops_dagster.factory.features import build_feature_asset
from mlops_dagster.factory.feedback import build_feedback_asset
from mlops_dagster.factory.live_performance import build_live_performance_asset
from mlops_dagster.factory.packaging import packaging_assets
from mlops_dagster.factory.predictions import build_predictions_asset
from mlops_dagster.factory.training import build_candidate_asset, build_training_set_asset
from mlops_dagster.io.parquet import ParquetIOManager
from mlops_dagster.keys import (
    IO_MANAGER_KEY,
    NOTIFIER_KEY,
    Tags,
    bento_key,
    candidate_key,
    champion_key,
    edge_bundle_key,
    feature_key,
    performance_rollback_job_name,
    retrain_job_name,
    training_set_key,
)
from mlops_dagster.sensors.drift import build_drift_sensor, report_job_for
from mlops_dagster.sensors.packaging import build_packaging_sensor
from mlops_dagster.sensors.performance import build_performance_sensor, watches_performance
from mlops_dagster.sensors.quality import build_quality_sensor
from mlops_dagster.spec import read_spec_files, resolve_specs
from mlops_dagster.spec.environments import EnvironmentSpec, NotifierSettings, check_environments
from mlops_dagster.spec.models import FeatureGroupSpec, PipelineSpec

# One shared default instance: Dagster refuses to merge Definitions (several components, or several
# build_definitions calls) that bind different objects under the same resource key.
DEFAULT_IO_MANAGER = ParquetIOManager()
DEFAULT_NOTIFIER = Notifier(kind="log")


def _collect(
    specs_or_paths: Iterable[PipelineSpec | str | Path],
) -> tuple[list[PipelineSpec], list[EnvironmentSpec]]:
    """The specs given as objects and read from paths, linked and checked together by `resolve_specs`,
    and the environments declared in those paths.

    Files are first resolved on their own, as `load_specs` does (a group's `inputs` must be among
    them); specs built in Python then join them for every other check, and may consume a group
    that a file declares. Their groups' inputs may be pipelines that another `Definitions` defines.
    """
    items = list(specs_or_paths)
    specs = [item for item in items if isinstance(item, PipelineSpec)]
    paths = [item for item in items if not isinstance(item, PipelineSpec)]
    files = read_spec_files(*paths)
    loaded = resolve_specs(files.pipelines, files.groups, pending=files.pending()) if paths else []
    resolved = resolve_specs([*specs, *loaded], files.groups, check_inputs=False)
    if specs and files.environments:  # gates may name pipelines built in Python: check against all
        names = {s.name for s in resolved}
        issues = check_environments(files.environments, names)
        if issues:
            raise SpecError(issues)
    return resolved, files.environments


@functools.cache
def _io_manager_for(base_path: str) -> ParquetIOManager:
    """One IO manager object per storage root (Dagster refuses two objects under one resource key)."""
    return ParquetIOManager(base_path=base_path)


def _executor_for(kind: str | None) -> dg.ExecutorDefinition | None:
    """The environment's executor. dagster-k8s and dagster-aws are imported only when one is chosen."""
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "ecs":
        from dagster_aws.ecs import ecs_executor

        return ecs_executor
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    return None


@functools.cache
def _notifier_for(settings: NotifierSettings | None) -> Notifier:
    """The environment's notifier; its URL and token are read from the variables it names, at run time."""
    if settings is None or settings.kind == "log":
        return DEFAULT_NOTIFIER
    return Notifier(
        kind=settings.kind,
        url=dg.EnvVar(settings.url_env) if settings.url_env else None,
        token=dg.EnvVar(settings.token_env) if settings.token_env else None,
    )


def pipeline_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    """The assets of one pipeline (not its feature groups, which are shared).

    `serving.targets: [batch]` adds `<p>/predictions`; `feedback:` adds `<p>/feedback` and, with the
    predictions, `<p>/live_performance` (the spec checks refuse feedback without `batch`).
    """
    batch = "batch" in spec.serving.targets
    return [
        build_dataset_asset(spec),
        build_training_set_asset(spec),
        build_candidate_asset(spec),
        build_champion_asset(spec),
        build_drift_report_asset(spec),
        *packaging_assets(spec),
        *([build_predictions_asset(spec)] if batch else []),
        *([build_feedback_asset(spec)] if spec.feedback is not None else []),
        *([build_live_performance_asset(spec)] if batch and spec.feedback is not None else []),
    ]


def retrain_job(spec: PipelineSpec) -> dg.UnresolvedAssetJobDefinition:
    packaging = [a for a, on in (("bento", "cloud"), ("edge_bundle", "edge")) if on in spec.serving.targets]
    sized = job_tags(spec, ["training_set", "candidate", "champion", *packaging])
    return dg.define_asset_job(
        name=retrain_job_name(spec.name),
        selection=dg.AssetSelection.assets(
            *(feature_key(g.name) for g in spec.feature_groups),
            training_set_key(spec.name),
            candidate_key(spec.name),
            champion_key(spec.name),
            *(
                k
                for k, on in ((bento_key(spec.name), "cloud"), (edge_bundle_key(spec.name), "edge"))
                if on in spec.serving.targets
            ),
        ),
        description=(
            f"Retrain `{spec.name}`: fresh features -> training set -> candidate -> gated champion "
            "-> packaging."
        ),
        tags={Tags.PIPELINE: spec.name, **sized},
    )


def performance_rollback_job(spec: PipelineSpec) -> dg.UnresolvedAssetJobDefinition:
    """The champion alone: the performance sensor runs it with action `rollback` (sensors/performance.py)."""
    return dg.define_asset_job(
        name=performance_rollback_job_name(spec.name),
        selection=dg.AssetSelection.assets(champion_key(spec.name)),
        description=(
            f"Roll `{spec.name}`'s champion back to the previous good version: requested by "
            "its performance sensor when the live metric breaches `monitoring.performance`."
        ),
        tags={Tags.PIPELINE: spec.name, **job_tags(spec, ["champion"])},
    )


def build_definitions(
    *specs_or_paths: PipelineSpec | str | Path,
    environment: str | None = None,
    resources: Mapping[str, Any] | None = None,
    extra: Sequence[dg.Definitions] = (),
    define_feature_groups: bool = True,
    environments: Sequence[EnvironmentSpec] = (),
) -> dg.Definitions:
    """Build the Dagster definitions for pipeline specs (objects, YAML files or folders).

    Args:
        specs_or_paths: `PipelineSpec`s and/or paths of YAML files or folders.
        environment: the environment to build for (an `environments:` entry of the paths, e.g.
            `staging`); default `$MLOPS_ENV`, else `$DAGSTER_CLOUD_DEPLOYMENT_NAME`, else the embedded
            default. Its storage root, sensor status, gates, compute and notifier apply
            (`mlops_dagster/environments.py`); environments never share files.
        resources: resources overriding the defaults (`mlops_io_manager`: a `ParquetIOManager`;
            `mlops_notifier`: a `Notifier`, log-only by default).
        extra: further `Definitions` merged in (the demo's own jobs and sensors, for example).
        define_feature_groups: when False, the `features/<g>` assets the pipelines consume are not
            defined here but referenced by key: another `Definitions` (another component) defines them.
        environments: environment entries given as objects (a component's `environment_files`),
            beside those read from the paths.

    Raises:
        SpecError: when the specs are invalid or inconsistent.
    """
    collected, declared = _collect(specs_or_paths)
    env = select_environment([*declared, *environments], environment)
    activate(env)  # for what is written outside the IO manager (model mirrors, exports)
    specs = [apply_environment(spec, env) for spec in collected]
    groups: dict[str, FeatureGroupSpec] = {}
    for spec in specs:
        for group in spec.feature_groups:
            groups.setdefault(group.name, group)
    assets: list[dg.AssetsDefinition] = (
        [build_feature_asset(g) for g in groups.values()] if define_feature_groups else []
    )
    jobs, sensors = [], []
    group_checks = {a.key: list(a.check_keys) for a in assets}
    for spec in specs:
        mine = pipeline_assets(spec)
        assets.extend(mine)
        job = retrain_job(spec)
        jobs.append(job)
        check_keys = [k for a in mine for k in a.check_keys]
        check_keys += [k for g in spec.feature_groups for k in group_checks.get(feature_key(g.name), [])]
        sensors.append(build_quality_sensor(spec, check_keys, job))
        report_job = report_job_for(spec, partitions_def(spec))
        jobs.append(report_job)
        sensors.append(build_drift_sensor(spec, job, report_job))
        if {"cloud", "edge"} & set(spec.serving.targets):  # follows the champion (sensors/packaging.py)
            sensors.append(build_packaging_sensor(spec))
        automated = [k for a in mine for k, c in a.automation_conditions_by_key.items() if c is not None]
        if automated:  # predictions follow the dataset, live performance its inputs (factory/automation.py)
            sensors.append(build_automation_sensor(spec, automated))
        if watches_performance(spec):  # live results roll the champion back (sensors/performance.py)
            rollback = performance_rollback_job(spec)
            jobs.append(rollback)
            sensors.append(build_performance_sensor(spec, job, rollback))
    io_manager = DEFAULT_IO_MANAGER if env.name is None else _io_manager_for(env.data_root)
    notifier = _notifier_for(env.spec.notifier if env.spec else None)
    all_resources: dict[str, Any] = {
        IO_MANAGER_KEY: io_manager,
        NOTIFIER_KEY: notifier,
        **(resources or {}),
    }
    executor = _executor_for(env.spec.executor if env.spec else None)
    defs = dg.Definitions(
        assets=assets, jobs=jobs, sensors=sensors, resources=all_resources, executor=executor
    )
    return dg.Definitions.merge(defs, *extra) if extra else defs

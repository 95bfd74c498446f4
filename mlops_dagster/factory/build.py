"""`build_definitions`: specs in, one `dagster.Definitions` out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_dagster.alerts import Notifier
from mlops_dagster.factory.champion import build_champion_asset
from mlops_dagster.factory.dataset import build_dataset_asset, partitions_def
from mlops_dagster.factory.drift_report import build_drift_report_asset
from mlops_dagster.factory.features import build_feature_asset
from mlops_dagster.factory.packaging import packaging_assets
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
    retrain_job_name,
    training_set_key,
)
from mlops_dagster.sensors.drift import build_drift_sensor, report_job_for
from mlops_dagster.sensors.packaging import build_packaging_sensor
from mlops_dagster.sensors.quality import build_quality_sensor
from mlops_dagster.spec import read_spec_files, resolve_specs
from mlops_dagster.spec.models import FeatureGroupSpec, PipelineSpec

# One shared default instance: Dagster refuses to merge Definitions (several components, or several
# build_definitions calls) that bind different objects under the same resource key.
DEFAULT_IO_MANAGER = ParquetIOManager()
DEFAULT_NOTIFIER = Notifier(kind="log")


def _collect(specs_or_paths: Iterable[PipelineSpec | str | Path]) -> list[PipelineSpec]:
    """The specs given as objects and read from paths, linked and checked together by `resolve_specs`.

    Files are first resolved on their own, as `load_specs` does (a group's `inputs` must be among
    them); specs built in Python then join them for every other check, and may consume a group
    that a file declares. Their groups' inputs may be pipelines that another `Definitions` defines.
    """
    items = list(specs_or_paths)
    specs = [item for item in items if isinstance(item, PipelineSpec)]
    paths = [item for item in items if not isinstance(item, PipelineSpec)]
    files = read_spec_files(*paths)
    loaded = resolve_specs(files.pipelines, files.groups, pending=files.issues) if paths else []
    return resolve_specs([*specs, *loaded], files.groups, check_inputs=False)


def pipeline_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    """The assets of one pipeline (not its feature groups, which are shared)."""
    return [
        build_dataset_asset(spec),
        build_training_set_asset(spec),
        build_candidate_asset(spec),
        build_champion_asset(spec),
        build_drift_report_asset(spec),
        *packaging_assets(spec),
    ]


def retrain_job(spec: PipelineSpec) -> dg.UnresolvedAssetJobDefinition:
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
        tags={Tags.PIPELINE: spec.name},
    )


def build_definitions(
    *specs_or_paths: PipelineSpec | str | Path,
    environment: str | None = None,
    resources: Mapping[str, Any] | None = None,
    extra: Sequence[dg.Definitions] = (),
    define_feature_groups: bool = True,
) -> dg.Definitions:
    """Build the Dagster definitions for pipeline specs (objects, YAML files or folders).

    Args:
        specs_or_paths: `PipelineSpec`s and/or paths of YAML files or folders.
        environment: optional environment name (e.g. `dev`, `prod`): data is stored under
            `<storage root>/<environment>/` so environments never share files.
        resources: resources overriding the defaults (`mlops_io_manager`: a `ParquetIOManager`;
            `mlops_notifier`: a `Notifier`, log-only by default).
        extra: further `Definitions` merged in (the demo's own jobs and sensors, for example).
        define_feature_groups: when False, the `features/<g>` assets the pipelines consume are not
            defined here but referenced by key: another `Definitions` (another component) defines them.

    Raises:
        SpecError: when the specs are invalid or inconsistent.
    """
    specs = _collect(specs_or_paths)
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
        if spec.serving.targets:  # the bento / edge bundle follow the champion (sensors/packaging.py)
            sensors.append(build_packaging_sensor(spec))
    io_manager = DEFAULT_IO_MANAGER
    if environment:
        from mlops_dagster.io.parquet import default_storage_root

        io_manager = ParquetIOManager(base_path=str(Path(default_storage_root()) / environment / "data"))
    all_resources: dict[str, Any] = {
        IO_MANAGER_KEY: io_manager,
        NOTIFIER_KEY: DEFAULT_NOTIFIER,
        **(resources or {}),
    }
    defs = dg.Definitions(assets=assets, jobs=jobs, sensors=sensors, resources=all_resources)
    return dg.Definitions.merge(defs, *extra) if extra else defs

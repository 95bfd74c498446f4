"""Definitions load: build + validate 200 generated pipelines with the plugin vs hand-written assets.

Run from the repo root:

    .venv/bin/python benchmarks/defs_load.py [--pipelines 200] [--groups 200] [--rounds 5] [--profile]

(a) plugin:   `load_specs(folder)` + `build_definitions(*specs)` + `defs.resolve_asset_graph()`
(b) baseline: the same graph written as plain `@dg.asset` definitions with literal values
              (keys, ins/deps, groups, partitions, kinds, owners, code versions, io manager, required
              outputs, the champion's pool, the asset checks), the jobs, the sensors (quality, drift,
              packaging) as plain `@dg.sensor` functions and the resources, then
              `dg.Definitions(...)` + `resolve_asset_graph()`.

Before timing, both sides must agree on every asset, asset check, job, sensor and resource key.
Both run in one process, warmed up once, then alternated for `--rounds` rounds; the table reports the
median and the minimum. The plugin's code-version cache is cleared before each plugin round, so every
round hashes the user modules again, as a fresh process would.
"""

import argparse
import cProfile
import functools
import gc
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd

HEAVY = ("sklearn", "bentoml", "evidently", "great_expectations", "onnx", "onnxruntime")
TARGET_RATIO = 1.3

TRANSFORMS_MODULE = '''"""Feature transforms for the defs_load benchmark (hashed, never imported)."""

import pandas as pd


def activity(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby(["entity_id", "event_time"], as_index=False).size()
'''

FEEDS_MODULE = '''"""Python sources for the defs_load benchmark (hashed, never imported)."""

import pandas as pd


def load(context) -> pd.DataFrame:
    return pd.DataFrame({"entity_id": [1], "event_time": [pd.Timestamp("2026-01-01")], "y": [0.0]})
'''


@dataclass
class Pipeline:
    name: str
    partitioned: bool
    source: Literal["python", "uri", "sql"]
    task: Literal["classification", "regression"]
    groups: list[str]
    owners: list[str]


@dataclass
class Group:
    name: str
    inputs: list[str]
    checked: bool  # declares one expectation, so its asset has one blocking check
    consumers: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# spec generation


def make_graph(n_pipelines: int, n_groups: int, seed: int = 0) -> tuple[list[Pipeline], list[Group]]:
    """Pipelines consume 1-3 groups; groups read 1-2 pipelines' datasets; half the pipelines are daily,
    half the groups declare an expectation."""
    rng = random.Random(seed)
    names = [f"p{i:03d}" for i in range(n_pipelines)]
    groups = [
        Group(f"g{j:03d}", sorted(rng.sample(names, rng.randint(1, 2))), checked=j % 2 == 0)
        for j in range(n_groups)
    ]
    own: list[set[int]] = [set() for _ in names]
    for j in range(n_groups):  # round-robin first, so that every group has a consumer
        own[j % n_pipelines].add(j)
    pipelines = []
    for i, name in enumerate(names):
        want = rng.randint(1, 3)
        while len(own[i]) < want:
            own[i].add(rng.randrange(n_groups))
        chosen = sorted(own[i])
        for j in chosen:
            groups[j].consumers.append(name)
        pipelines.append(
            Pipeline(
                name=name,
                partitioned=i % 2 == 0,
                source=("python", "uri", "sql")[i % 3],
                task="regression" if i % 2 else "classification",
                groups=[groups[j].name for j in chosen],
                owners=[f"team:t{i % 7}"],
            )
        )
    return pipelines, groups


def _pipeline_yaml(p: Pipeline) -> str:
    source = {
        "python": "python: bench_feeds:load",
        "uri": f"uri: data/{p.name}/{{partition}}.parquet",
        "sql": f"sql: \"select * from read_parquet('data/{p.name}/*.parquet')\"",
    }[p.source]
    partitions = '  partitions: {daily: {start: "2026-01-01", end: "2026-07-01"}}\n' if p.partitioned else ""
    if p.task == "classification":
        model = "  task: classification\n  estimator: sklearn.linear_model.LogisticRegression\n"
        model += "  params: {C: 1.0, max_iter: 200}\n  metric: roc_auc\n"
        gates, perf = "{roc_auc: 0.6}", "{metric: roc_auc, min: 0.55}"
    else:
        model = "  task: regression\n  estimator: sklearn.linear_model.Ridge\n"
        model += "  params: {alpha: 1.0}\n  metric: r2\n"
        gates, perf = "{r2: 0.2}", "{metric: r2, min: 0.1}"
    return (
        f"name: {p.name}\n"
        f"description: Benchmark pipeline {p.name}\n"
        f'owners: ["{p.owners[0]}"]\n'
        "dataset:\n"
        "  source:\n"
        f"    {source}\n"
        f"{partitions}"
        "  entity: entity_id\n"
        "  timestamp: event_time\n"
        "  label: y\n"
        "quality:\n"
        "  expectations:\n"
        "    - {type: expect_column_values_to_not_be_null, column: entity_id}\n"
        "    - {type: expect_column_values_to_be_between, column: x1, min_value: 0, max_value: 100}\n"
        f"features: [{', '.join(p.groups)}]\n"
        "model:\n"
        f"{model}"
        "  features: [x1, x2, x3]\n"
        "gates:\n"
        f"  min: {gates}\n"
        "  max_regression: 0.01\n"
        "monitoring:\n"
        "  drift: {max_drifted_share: 0.3, cooldown: 6h}\n"
        f"  performance: {perf}\n"
        "serving:\n"
        "  targets: [cloud, edge]\n"
    )


def _groups_yaml(groups: list[Group]) -> str:
    out = ["feature_groups:"]
    for g in groups:
        out += [
            f"  - name: {g.name}",
            f"    description: Benchmark feature group {g.name}",
            f"    inputs: [{', '.join(g.inputs)}]",
            "    transform: bench_transforms:activity",
            "    entity: entity_id",
            "    timestamp: event_time",
            '    owners: ["team:data"]',
            "    pii: [email]",
            f"    consumers: [{', '.join(g.consumers)}]",
            "    columns: [size, email]",
        ]
        if g.checked:
            out += [
                "    quality:",
                "      expectations: [{type: expect_column_values_to_not_be_null, column: size}]",
            ]
    return "\n".join(out) + "\n"


def write_specs(root: Path, pipelines: list[Pipeline], groups: list[Group]) -> Path:
    """Write one YAML per pipeline plus one feature-group file under `root/specs`; modules under `root`."""
    (root / "bench_transforms.py").write_text(TRANSFORMS_MODULE)
    (root / "bench_feeds.py").write_text(FEEDS_MODULE)
    specs = root / "specs"
    specs.mkdir()
    for p in pipelines:
        (specs / f"{p.name}.yaml").write_text(_pipeline_yaml(p))
    (specs / "features.yaml").write_text(_groups_yaml(groups))
    return specs


# --------------------------------------------------------------------------------------------------
# (a) plugin


def build_plugin(folder: Path, phases: dict[str, list[float]] | None = None) -> dg.Definitions:
    from mlops_dagster import build_definitions, load_specs
    from mlops_dagster.factory.versions import module_source_hash

    module_source_hash.cache_clear()  # every round hashes user code again, like a fresh process
    t0 = time.perf_counter()
    specs = load_specs(folder)
    t1 = time.perf_counter()
    defs = build_definitions(*specs)
    t2 = time.perf_counter()
    defs.resolve_asset_graph()
    t3 = time.perf_counter()
    if phases is not None:
        for name, dt in (("load_specs", t1 - t0), ("build_definitions", t2 - t1), ("resolve", t3 - t2)):
            phases.setdefault(name, []).append(dt)
    return defs


# --------------------------------------------------------------------------------------------------
# (b) baseline: hand-written Dagster, every value a literal (code versions copied from the plugin once)


@dataclass
class BaselineTable:
    pipelines: list[Pipeline]
    groups: list[Group]
    code_versions: dict[str, str]  # "<p>/dataset" etc. -> literal code version string


class ChampionConfig(dg.Config):
    action: Literal["gate", "promote", "rollback"] = "gate"
    version: str | None = None
    reason: str = ""


NOT_NULL = {"type": "expect_column_values_to_not_be_null", "column": "entity_id"}
BETWEEN = {"type": "expect_column_values_to_be_between", "column": "x1", "min_value": 0, "max_value": 100}
SIZE_NOT_NULL = {"type": "expect_column_values_to_not_be_null", "column": "size"}
GUARD_DESCRIPTION = (
    "Built-in: the batch can be read; columns, dtypes and keys against the champion's training schema; "
    "entity not null, no duplicate entity+timestamp, timestamps inside the partition."
)
ESTIMATORS = {
    "classification": "sklearn.linear_model.LogisticRegression",
    "regression": "sklearn.linear_model.Ridge",
}
# The dataset's built-in checks as the plugin declares them with the spec's defaults:
# (name, blocking, description); the inferred range check is a warning unless the spec makes it blocking.
BUILTIN_CHECKS = (
    ("mlops_label", True, "Built-in: label `y` present and never null."),
    (
        "mlops_inferred_presence",
        True,
        "Inferred from the champion's training profile: no column's share of nulls rises by more than 0.1 "
        "(quality.inferred.presence).",
    ),
    (
        "mlops_inferred_domain",
        True,
        "Inferred from the champion's training profile: at most 0 of a categorical column's values are "
        "ones the champion never saw (quality.inferred.domain).",
    ),
    (
        "mlops_inferred_range",
        False,
        "Inferred from the champion's training profile (a warning): numbers within the training [min, max] "
        "widened by 0.1 x the range on each side (quality.inferred.range).",
    ),
)


def build_baseline(table: BaselineTable) -> dg.Definitions:
    from mlops_dagster import Notifier, ParquetIOManager

    io_key, notifier_key = "mlops_io_manager", "mlops_notifier"
    cv = table.code_versions

    def feature_asset(g: Group) -> dg.AssetsDefinition:
        key = dg.AssetKey(["features", g.name])
        checks = (
            [
                dg.AssetCheckSpec(
                    "expect_column_values_to_not_be_null__size",
                    asset=key,
                    blocking=True,
                    description="Great Expectations `expect_column_values_to_not_be_null(column='size')`",
                    metadata={"mlops/expectation": SIZE_NOT_NULL},
                )
            ]
            if g.checked
            else []
        )

        @dg.asset(
            key=key,
            group_name="features",
            description=(
                f"Benchmark feature group {g.name}\n\nInputs: {', '.join(g.inputs)}. Consumers: "
                + ", ".join(f"`{c}`" for c in g.consumers)
                + ". PII (hashed): email."
            ),
            kinds={"pandas", "parquet"},
            owners=["team:data"],
            ins={f"{p}_dataset": dg.AssetIn(key=[p, "dataset"]) for p in g.inputs},
            code_version=cv[f"features/{g.name}"],
            io_manager_key=io_key,
            metadata={"mlops/consumers": list(g.consumers), "mlops/pii": ["email"]},
            check_specs=checks,
            output_required=False,
            required_resource_keys={io_key},
        )
        def _feature_group(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> Iterator[Any]:
            yield dg.Output(pd.concat(inputs.values()))

        return _feature_group

    def pipeline_assets(p: Pipeline) -> list[dg.AssetsDefinition]:
        parts = (
            dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-07-01")
            if p.partitioned
            else None
        )
        dataset = dg.AssetKey([p.name, "dataset"])
        checks = [
            dg.AssetCheckSpec(
                "mlops_schema_guard",
                asset=dataset,
                blocking=True,
                partitions_def=parts,
                description=GUARD_DESCRIPTION,
            ),
            *(
                dg.AssetCheckSpec(
                    name, asset=dataset, blocking=blocking, partitions_def=parts, description=description
                )
                for name, blocking, description in BUILTIN_CHECKS
            ),
            dg.AssetCheckSpec(
                "expect_column_values_to_not_be_null__entity_id",
                asset=dataset,
                blocking=True,
                partitions_def=parts,
                description="Great Expectations `expect_column_values_to_not_be_null(column='entity_id')`",
                metadata={"mlops/expectation": NOT_NULL},
            ),
            dg.AssetCheckSpec(
                "expect_column_values_to_be_between__x1",
                asset=dataset,
                blocking=True,
                partitions_def=parts,
                description=(
                    "Great Expectations `expect_column_values_to_be_between(column='x1', min_value=0, "
                    "max_value=100)`"
                ),
                metadata={"mlops/expectation": BETWEEN},
            ),
        ]

        @dg.asset(
            key=dataset,
            group_name=p.name,
            description=(
                f"Raw dataset of `{p.name}` from its {p.source} source, checked by 6 blocking quality "
                f"check(s) and 1 warning(s); pii columns ['email'] are stored hashed. "
                f"Benchmark pipeline {p.name}"
            ),
            kinds={"pandas", "parquet", "duckdb"} if p.source == "sql" else {"pandas", "parquet"},
            owners=p.owners,
            code_version=cv[f"{p.name}/dataset"],
            partitions_def=parts,
            io_manager_key=io_key,
            check_specs=checks,
            output_required=False,
            required_resource_keys={io_key},
            metadata={"mlops/pipeline": p.name, "mlops/source": {p.source: "..."}, "mlops/pii": ["email"]},
        )
        def _dataset(context: dg.AssetExecutionContext) -> Iterator[Any]:
            yield dg.Output(pd.DataFrame())

        ins = {"dataset": dg.AssetIn(key=dataset)}
        ins.update({f"group_{g}": dg.AssetIn(key=["features", g]) for g in p.groups})

        @dg.asset(
            key=[p.name, "training_set"],
            group_name=p.name,
            description=f"Point-in-time correct join of `{p.name}` labels with its feature groups.",
            kinds={"pandas", "parquet"},
            owners=p.owners,
            ins=ins,
            code_version=cv[f"{p.name}/training_set"],
            io_manager_key=io_key,
        )
        def _training_set(
            context: dg.AssetExecutionContext, dataset: pd.DataFrame, **groups: pd.DataFrame
        ) -> pd.DataFrame:
            return dataset

        @dg.asset(
            key=[p.name, "candidate"],
            group_name=p.name,
            description=(
                f"A newly trained `{ESTIMATORS[p.task]}` for `{p.name}`: every materialization is an "
                "immutable, sha256-addressed version in the BentoML model store, with a model card."
            ),
            kinds={"scikitlearn", "bentoml"},
            owners=p.owners,
            ins={"training_set": dg.AssetIn(key=[p.name, "training_set"])},
            code_version=cv[f"{p.name}/candidate"],
        )
        def _candidate(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> dg.MaterializeResult:
            return dg.MaterializeResult()

        @dg.asset(
            key=[p.name, "champion"],
            group_name=p.name,
            description=(
                f"The `{p.name}` model in service. Moves only when a candidate passes the gates or by an "
                "explicit rollback; its materialization history is the registry of record."
            ),
            kinds={"bentoml"},
            owners=p.owners,
            ins={"training_set": dg.AssetIn(key=[p.name, "training_set"])},
            deps=[[p.name, "candidate"]],
            code_version=cv[f"{p.name}/champion"],
            output_required=False,
            pool=f"mlops_champion_{p.name}",  # one champion decision at a time per pipeline
        )
        def _champion(
            context: dg.AssetExecutionContext, config: ChampionConfig, training_set: pd.DataFrame
        ) -> Iterator[dg.MaterializeResult]:
            yield dg.MaterializeResult()

        @dg.asset(
            key=[p.name, "drift_report"],
            group_name=p.name,
            description=(
                f"Drift of a `{p.name}` dataset partition against the champion's reference: the drift "
                "sensor's decision and Evidently's HTML report with the same settings."
            ),
            kinds={"evidently"},
            owners=p.owners,
            partitions_def=parts,
            ins={"dataset": dg.AssetIn(key=dataset)},
            deps=[[p.name, "champion"]],
            code_version=cv[f"{p.name}/drift_report"],
            required_resource_keys={io_key},
        )
        def _drift_report(context: dg.AssetExecutionContext, dataset: pd.DataFrame) -> dg.MaterializeResult:
            return dg.MaterializeResult()

        @dg.asset(
            key=[p.name, "bento"],
            group_name=p.name,
            description=(
                f"BentoML bento serving the `{p.name}` champion (onnxruntime with the bundle the champion "
                "decision checked), with its generated Dockerfile and pinned requirements."
            ),
            kinds={"bentoml", "docker"},
            owners=p.owners,
            deps=[[p.name, "champion"]],
            code_version=cv[f"{p.name}/bento"],
        )
        def _bento(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            return dg.MaterializeResult()

        edge_bundle = dg.AssetKey([p.name, "edge_bundle"])

        @dg.asset(
            key=edge_bundle,
            group_name=p.name,
            description=(
                f"Self-contained ONNX bundle of the `{p.name}` champion for edge devices: the bundle the "
                "champion decision converted and checked, kept in the BentoML store."
            ),
            kinds={"onnx", "bentoml"},
            owners=p.owners,
            deps=[[p.name, "champion"]],
            check_specs=[
                dg.AssetCheckSpec(
                    "onnx_parity",
                    asset=edge_bundle,
                    blocking=True,
                    description=(
                        "ONNX predictions equal the champion's on its holdout (checked in the champion "
                        "decision), and the published files are that bundle's"
                    ),
                )
            ],
            required_resource_keys={io_key},
            code_version=cv[f"{p.name}/edge_bundle"],
        )
        def _edge_bundle(context: dg.AssetExecutionContext) -> Iterator[Any]:
            yield dg.MaterializeResult()

        return [_dataset, _training_set, _candidate, _champion, _drift_report, _bento, _edge_bundle]

    def pipeline_jobs_and_sensors(p: Pipeline, check_keys: list[dg.AssetCheckKey]) -> tuple[list, list]:
        retrain = dg.define_asset_job(
            name=f"{p.name}__retrain",
            selection=dg.AssetSelection.assets(
                *(["features", g] for g in p.groups),
                [p.name, "training_set"],
                [p.name, "candidate"],
                [p.name, "champion"],
                [p.name, "bento"],
                [p.name, "edge_bundle"],
            ),
            description=(
                f"Retrain `{p.name}`: fresh features -> training set -> candidate -> gated champion -> "
                "packaging."
            ),
            tags={"mlops/pipeline": p.name},
        )
        report = dg.define_asset_job(
            name=f"{p.name}__drift_report_job",
            selection=dg.AssetSelection.assets([p.name, "drift_report"]),
            partitions_def=(
                dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-07-01")
                if p.partitioned
                else None
            ),
            description=f"Evidently drift report of a `{p.name}` partition.",
            tags={"mlops/pipeline": p.name},
        )

        @dg.sensor(
            name=f"{p.name}__quality_sensor",
            job=retrain,
            minimum_interval_seconds=30,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=(
                f"Alerts once per `{p.name}` partition whose blocking quality checks fail, and requests a "
                "retrain once a failed partition passes again."
            ),
        )
        def _quality_sensor(context: dg.SensorEvaluationContext, mlops_notifier: Notifier) -> dg.SkipReason:
            return dg.SkipReason(f"{len(check_keys)} check keys, no new evaluations")

        @dg.sensor(
            name=f"{p.name}__drift_sensor",
            jobs=[retrain, report],
            minimum_interval_seconds=60,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=(
                f"Drift of each new `{p.name}` partition against the champion's reference profile; retrains "
                "when more than 30% of the columns drift (cooldown 6:00:00)."
            ),
        )
        def _drift_sensor(
            context: dg.SensorEvaluationContext, mlops_io_manager: dg.ResourceParam[ParquetIOManager]
        ) -> dg.SkipReason:
            return dg.SkipReason("no new partitions")

        @dg.sensor(
            name=f"{p.name}__packaging_sensor",
            asset_selection=dg.AssetSelection.assets([p.name, "bento"], [p.name, "edge_bundle"]),
            minimum_interval_seconds=15,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=(
                f"Requests {p.name}/bento, {p.name}/edge_bundle whenever the champion version they "
                f"package differs from `{p.name}`'s champion (promote, rollback, a crashed or failed run)."
            ),
        )
        def _packaging_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
            return dg.SkipReason("packaging is at the champion")

        return [retrain, report], [_quality_sensor, _drift_sensor, _packaging_sensor]

    checked = {g.name for g in table.groups if g.checked}
    assets: list[dg.AssetsDefinition] = [feature_asset(g) for g in table.groups]
    jobs, sensors = [], []
    for p in table.pipelines:
        mine = pipeline_assets(p)
        assets.extend(mine)
        check_keys = [k for a in mine for k in a.check_keys]
        check_keys += [
            dg.AssetCheckKey(dg.AssetKey(["features", g]), "expect_column_values_to_not_be_null__size")
            for g in p.groups
            if g in checked
        ]
        j, s = pipeline_jobs_and_sensors(p, check_keys)
        jobs += j
        sensors += s
    resources = {io_key: ParquetIOManager(), notifier_key: Notifier(kind="log")}
    defs = dg.Definitions(assets=assets, jobs=jobs, sensors=sensors, resources=resources)
    defs.resolve_asset_graph()
    return defs


# --------------------------------------------------------------------------------------------------
# checks and measurement


def graph_signature(graph: Any) -> dict[str, Any]:
    """What both sides must agree on, per asset key: deps, group, partitions, backfill policy, automation
    condition, kinds, owners, code version, IO manager, resources, whether each output is required,
    concurrency pools; per check key: blocking and partitions."""
    out: dict[str, Any] = {}
    for node in graph.asset_nodes:
        key = node.key.to_user_string()
        assets_def = node.assets_def
        out[key] = (
            sorted(k.to_user_string() for k in node.parent_keys),
            node.group_name,
            repr(node.partitions_def),
            repr(node.backfill_policy),
            repr(node.automation_condition),
            sorted(node.kinds),
            sorted(node.owners),
            node.code_version,
            node.io_manager_key,
            sorted(assets_def.required_resource_keys),
            [o.is_required for o in assets_def.node_def.output_defs],
            sorted(node.pools or ()),
        )
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        out[f"check {check_key.to_user_string()}"] = (spec.blocking, repr(spec.partitions_def))
    return out


def jobs_signature(defs: dg.Definitions) -> dict[str, Any]:
    """Per job: its selected assets and checks and its partitions; per sensor: its jobs or the assets it
    selects, status, interval and resources; the resource keys and types."""
    repo = defs.get_repository_def()
    graph = defs.resolve_asset_graph()
    out: dict[str, Any] = {
        f"job {job.name}": (
            sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys),
            sorted(k.to_user_string() for k in job.asset_layer.asset_graph.asset_check_keys),
            repr(job.partitions_def),
        )
        for job in repo.get_all_jobs()
        if not job.name.startswith("__")
    }
    for sensor in repo.sensor_defs:
        out[f"sensor {sensor.name}"] = (
            sorted(t.job_name for t in sensor.targets),
            sorted(k.to_user_string() for k in sensor.asset_selection.resolve(graph))
            if sensor.asset_selection is not None
            else [],
            sensor.default_status,
            sensor.minimum_interval_seconds,
            sorted(sensor.required_resource_keys),
        )
    out["resources"] = sorted((k, type(v).__name__) for k, v in (defs.resources or {}).items())
    return out


def diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def code_versions_of(graph: Any) -> dict[str, str]:
    return {node.key.to_user_string(): node.code_version for node in graph.asset_nodes}


class FullCollections:
    """Counts the collector's full (generation 2) passes: one costs ~0.15 s on a heap this size."""

    def __init__(self) -> None:
        self.count = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.count += 1


@dataclass
class Series:
    times: list[float] = field(default_factory=list)
    full_gcs: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)


def timed(fn: Callable[[], Any], series: Series, counter: FullCollections, gc_paused: bool) -> None:
    """Time one call from a freshly collected heap, with the collector running (default) or paused."""
    gc.collect()
    before = counter.count
    if gc_paused:
        gc.disable()
    try:
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
    finally:
        gc.enable()
    series.times.append(dt)
    series.full_gcs.append(counter.count - before)
    del result


def machine() -> str:
    import pydantic
    import yaml

    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"dagster {dg.__version__}, pydantic {pydantic.VERSION}, PyYAML {yaml.__version__} "
        f"(libyaml {'yes' if yaml.__with_libyaml__ else 'no'}), mlops_dagster {version('mlops_dagster')}"
    )


def profile_plugin(folder: Path, top: int = 30) -> None:
    prof = cProfile.Profile()
    prof.enable()
    build_plugin(folder)
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one plugin build and print it")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # Beta/Preview warnings cost the same on both sides; keep output clean

    with tempfile.TemporaryDirectory(prefix="mlops-defs-load-") as tmp:
        root = Path(tmp)
        pipelines, groups = make_graph(args.pipelines, args.groups)
        folder = write_specs(root, pipelines, groups)
        sys.path.insert(0, str(root))

        # Warm-up (imports, pydantic/dagster first-use costs); also yields the literal code versions.
        plugin_defs = build_plugin(folder)
        table = BaselineTable(pipelines, groups, code_versions_of(plugin_defs.resolve_asset_graph()))
        baseline_defs = build_baseline(table)
        pairs = {
            "graphs": (
                graph_signature(plugin_defs.resolve_asset_graph()),
                graph_signature(baseline_defs.resolve_asset_graph()),
            ),
            "jobs, sensors or resources": (jobs_signature(plugin_defs), jobs_signature(baseline_defs)),
        }
        for what, (ours, theirs) in pairs.items():
            if ours != theirs:
                diff = diff_keys(ours, theirs)
                raise SystemExit(f"baseline and plugin {what} differ ({len(diff)} keys), e.g. {diff[:5]}")
        graph = plugin_defs.resolve_asset_graph()
        repo = plugin_defs.get_repository_def()
        n_assets, n_checks = len(graph.asset_nodes), len(graph.asset_check_keys)
        n_jobs = sum(not j.name.startswith("__") for j in repo.get_all_jobs())
        n_sensors = len(repo.sensor_defs)
        del graph, repo
        del plugin_defs, baseline_defs

        phases: dict[str, list[float]] = {}
        counter = FullCollections()
        runs = {(side, paused): Series() for side in ("plugin", "baseline") for paused in (False, True)}
        for _ in range(args.rounds):
            for paused in (False, True):
                timed(
                    functools.partial(build_plugin, folder, None if paused else phases),
                    runs["plugin", paused],
                    counter,
                    paused,
                )
                timed(lambda: build_baseline(table), runs["baseline", paused], counter, paused)

        if args.profile:
            profile_plugin(folder)

    leaked = [m for m in HEAVY if m in sys.modules]
    assert not leaked, f"building definitions imported heavy libraries: {leaked}"

    print(f"Machine: {machine()}")
    print(
        f"Graph: {args.pipelines} pipelines ({sum(p.partitioned for p in pipelines)} daily-partitioned), "
        f"{args.groups} feature groups ({sum(g.checked for g in groups)} with an expectation), "
        f"{n_assets} assets, {n_checks} asset checks, {n_jobs} jobs, {n_sensors} sensors; "
        f"{args.rounds} alternating rounds after one warm-up\n"
    )
    print("| build+validate | assets | GC | median s | min s | full GC passes |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    ratios = {}
    for paused, mode in ((False, "on"), (True, "paused")):
        plugin, baseline = runs["plugin", paused], runs["baseline", paused]
        for label, series in (
            ("(a) plugin: load_specs + build_definitions + resolve_asset_graph", plugin),
            ("(b) baseline: hand-written @dg.asset + Definitions + resolve_asset_graph", baseline),
        ):
            gcs = statistics.median(series.full_gcs)
            print(f"| {label} | {n_assets} | {mode} | {series.median:.3f} | {series.min:.3f} | {gcs:g} |")
        ratios[mode] = plugin.median / baseline.median
        print(
            f"| **ratio plugin / baseline** (target <= {TARGET_RATIO}) | | {mode} | "
            f"**{ratios[mode]:.2f}** | {plugin.min / baseline.min:.2f} | |"
        )
    print()
    print(
        "Plugin phases, GC on (median s): "
        + ", ".join(f"{name} {statistics.median(ts):.3f}" for name, ts in phases.items())
    )
    print(f"Heavy libraries imported: {leaked or 'none'} (checked: {', '.join(HEAVY)})")
    if ratios["on"] > TARGET_RATIO:
        print(f"Ratio {ratios['on']:.2f} is above the target {TARGET_RATIO}; --profile shows where it goes.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

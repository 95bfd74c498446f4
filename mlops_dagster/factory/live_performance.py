"""The `<p>/live_performance` asset: how each model version does on the labels that came back.

Per partition it joins `<p>/predictions` with `<p>/feedback` (entity and timestamp) and scores
`monitoring.performance.metric` (else `model.metric`) with sklearn's scorer (`monitoring.live`), over
all labelled predictions and per model version that predicted in the partition. The output is one row
per version (`version`, `metric`, `samples`); the metadata is numeric so that the UI plots it across
partitions beside the champion's holdout score, and `<p>__performance_sensor` reads exactly these keys:

- `mlops/live_metric` (float): the metric on every labelled prediction; absent when it cannot be
  computed (the note says why);
- `mlops/holdout_metric` (float): the current champion's holdout score (from its registry record);
  absent when the record lacks it;
- `mlops/samples` (int), `mlops/label_coverage` (float: the share of predictions with a label),
  `mlops/unmatched_labels` (int);
- `mlops/evidence` (bool): the metric was computed on at least `monitoring.performance.min_samples`
  labels (50 without `performance`); a partition without evidence is neither good nor bad;
- `mlops/live_by_version` (table: version, metric, samples), `mlops/model_versions`, `mlops/metric`.

Follows its two inputs (automation condition): a partition is scored again whenever its predictions
or its labels change, also long after the partition's day, since labels arrive late.
"""

from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.factory.automation import follows
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.dataset import partitions_def
from mlops_dagster.factory.versions import code_version
from mlops_dagster.keys import IO_MANAGER_KEY, Meta, feedback_key, live_performance_key, predictions_key
from mlops_dagster.spec.models import PipelineSpec

DEFAULT_MIN_SAMPLES = 50  # `monitoring.performance.min_samples` when the spec sets no performance block
_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("version", "string"),
        dg.TableColumn("metric", "float"),
        dg.TableColumn("samples", "int"),
    ]
)


def live_metric_name(spec: PipelineSpec) -> str:
    """The metric scored live: `monitoring.performance.metric`, else `model.metric`."""
    performance = spec.monitoring.performance
    return performance.metric if performance else spec.model.metric


def min_samples(spec: PipelineSpec) -> int:
    performance = spec.monitoring.performance
    return performance.min_samples if performance else DEFAULT_MIN_SAMPLES


def live_metadata(spec: PipelineSpec, live: Any, holdout: float | None) -> dict[str, Any]:
    """The metadata of one partition's `LivePerformance` (see the module docstring)."""
    overall = live.overall
    evidence = overall.metric is not None and overall.samples >= min_samples(spec)
    notes = live.notes()
    if overall.metric is not None and not evidence:
        notes.append(f"{overall.samples} label(s), fewer than the {min_samples(spec)} needed: no evidence")
    table = dg.TableMetadataValue(
        records=[
            dg.TableRecord({"version": s.version, "metric": s.metric, "samples": s.samples})
            for s in live.by_version
        ],
        schema=_TABLE_SCHEMA,
    )
    metadata: dict[str, Any] = {
        Meta.METRIC_NAME: live.metric,
        Meta.SAMPLES: dg.MetadataValue.int(live.samples),
        Meta.LABEL_COVERAGE: dg.MetadataValue.float(float(live.coverage)),
        Meta.UNMATCHED_LABELS: dg.MetadataValue.int(live.unmatched_labels),
        Meta.EVIDENCE: dg.MetadataValue.bool(evidence),
        Meta.LIVE_BY_VERSION: table,
        Meta.MODEL_VERSIONS: dg.MetadataValue.json(live.versions),
    }
    if overall.metric is not None:
        metadata[Meta.LIVE_METRIC] = dg.MetadataValue.float(float(overall.metric))
    if holdout is not None:
        metadata[Meta.HOLDOUT_METRIC] = dg.MetadataValue.float(float(holdout))
    if notes:
        metadata[Meta.NOTE] = "; ".join(notes)
    return metadata


def build_live_performance_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """`<p>/live_performance`, partitioned like the dataset, following predictions and feedback."""
    if spec.feedback is None:
        raise ValueError(f"{spec.name}: live performance needs a `feedback:` block")
    fb, ds = spec.feedback, spec.dataset
    key = live_performance_key(spec.name)
    metric = live_metric_name(spec)
    upstream = [predictions_key(spec.name), feedback_key(spec.name)]
    joined_on = [ds.entity, ds.timestamp, fb.entity, fb.timestamp, fb.label]

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "live_performance"),
        group_name=spec.name,
        description=(
            f"`{metric}` of the `{spec.name}` batch predictions on the labels that came back (feedback), "
            "per partition and per model version, with the label coverage and the champion's holdout "
            f"score; evidence from {min_samples(spec)} labelled predictions. Read by "
            f"`{spec.name}__performance_sensor`."
        ),
        kinds={"scikitlearn", "pandas", "parquet"},
        owners=list(spec.owners),
        ins={"predictions": dg.AssetIn(key=upstream[0]), "feedback": dg.AssetIn(key=upstream[1])},
        partitions_def=partitions_def(spec),
        code_version=code_version("live_performance", metric, spec.model.task, joined_on),
        io_manager_key=IO_MANAGER_KEY,
        automation_condition=follows(upstream),
        metadata={Meta.PIPELINE: spec.name, Meta.METRIC_NAME: metric},
    )
    def _live_performance(
        context: dg.AssetExecutionContext, predictions: pd.DataFrame, feedback: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        from mlops_dagster.monitoring.live import JoinKeys, live_performance
        from mlops_dagster.registry.records import current_champion

        keys = JoinKeys(ds.entity, ds.timestamp, fb.entity, fb.timestamp, fb.label)
        live = live_performance(predictions, feedback, keys, metric, spec.model.task)
        champion = current_champion(context.instance, spec.name)
        holdout = champion.metrics.get(metric) if champion is not None else None
        metadata = live_metadata(spec, live, holdout)
        partition = context.partition_key if context.has_partition_key else ""
        shown = "n/a" if live.overall.metric is None else f"{live.overall.metric:.4f}"
        context.log.info(
            f"{spec.name} {partition}: {metric}={shown} on {live.samples} label(s) "
            f"({live.coverage:.0%} of {live.predictions} predictions); versions {live.versions}"
            + (f"; {metadata[Meta.NOTE]}" if Meta.NOTE in metadata else "")
        )
        out = pd.DataFrame(
            {
                "version": pd.Series([s.version for s in live.by_version], dtype="string"),
                "metric": pd.Series([s.metric for s in live.by_version], dtype="float64"),
                "samples": pd.Series([s.samples for s in live.by_version], dtype="int64"),
            }
        )
        return dg.Output(out, metadata=metadata)

    return _live_performance

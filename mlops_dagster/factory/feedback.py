"""The `<p>/feedback` asset: labels that arrive late, checked and quarantined like the dataset.

`feedback.source` is read per partition (the dataset's partitions: a row belongs to the partition of
the prediction it labels, its event time). The batch passes the same kind of blocking checks as a
dataset batch, evaluated in the asset's step:

- `mlops_schema_guard`: the entity, timestamp and label columns are present and not all null, typed as
  the dataset columns they stand for were when the champion was trained, entity never null,
  timestamps parse and lie inside the partition, no duplicate entity + timestamp (a label counted
  twice would bias the live metric);
- `mlops_label`: labels never null and, for classification, among the champion's classes (unless
  `quality.allow_new_classes`);
- one check per `feedback.expectations` entry (Great Expectations).

A batch failing one is quarantined and audited as a dataset batch is (`factory.dataset.settle_batch`).
PII: the pipeline's pii columns are hashed before anything is stored, and so is the feedback's entity
when the dataset's entity is pii, the same way (`quality.pii`), so that it joins with the hashed
entity of `<p>/predictions` and no raw value leaves the source.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_dagster.errors import DataError
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.dataset import partitions_def, settle_batch, unreadable_batch
from mlops_dagster.factory.quality_checks import (
    builtin_result,
    check_specs,
    expectation_results,
    guard_result,
)
from mlops_dagster.factory.versions import code_version
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.io.sources import BatchSource, read_source
from mlops_dagster.keys import IO_MANAGER_KEY, Meta, feedback_key
from mlops_dagster.quality.baseline import Baseline
from mlops_dagster.quality.builtin_checks import label_outcome
from mlops_dagster.quality.schema_guard import guard_frame
from mlops_dagster.spec.models import FeedbackSpec, PipelineSpec


def _feedback(spec: PipelineSpec) -> FeedbackSpec:
    if spec.feedback is None:
        raise ValueError(f"{spec.name}: the spec declares no feedback")
    return spec.feedback


def feedback_pii(spec: PipelineSpec) -> frozenset[str]:
    """The feedback columns stored hashed: the pipeline's pii columns, and the feedback's entity when
    the dataset's entity is pii (hashed alike, it still joins with the predictions' entity)."""
    fb = _feedback(spec)
    extra = {fb.entity} if spec.dataset.entity in spec.pii_columns else set()
    return spec.pii_columns | extra


def expected_types(spec: PipelineSpec, baseline: Baseline) -> dict[str, str] | None:
    """The dtypes of the feedback's keys and label: those the dataset columns they stand for had when
    the champion was trained (None without a champion). A pii entity is hashed on the way in, so its
    raw type is not compared."""
    if not baseline.schema:
        return None
    fb, ds = _feedback(spec), spec.dataset
    pairs = [(fb.timestamp, ds.timestamp), (fb.label, ds.label)]
    if ds.entity not in spec.pii_columns:
        pairs.append((fb.entity, ds.entity))
    return {mine: baseline.schema[theirs] for mine, theirs in pairs if theirs in baseline.schema}


def build_feedback_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """`<p>/feedback`, partitioned like the dataset."""
    fb = _feedback(spec)
    key = feedback_key(spec.name)
    parts = partitions_def(spec)
    checks = check_specs(key, fb.expectations, parts, schema_guard=True, pipeline=spec, label_only=fb.label)
    pii = feedback_pii(spec)
    roles = {fb.entity: "entity", fb.timestamp: "timestamp", fb.label: "label"}
    source = fb.source

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "feedback"),
        group_name=spec.name,
        description=(
            f"Late labels of `{spec.name}`: `{fb.label}` per `{fb.entity}` and `{fb.timestamp}`, from "
            f"its {source.kind} source, checked by {len(checks)} blocking check(s) and quarantined like "
            "the dataset"
            + (f"; pii columns {sorted(pii)} are stored hashed" if pii else "")
            + ". Joined with the batch predictions by `live_performance`."
        ),
        kinds={"pandas", "parquet"} | ({"duckdb"} if source.kind == "sql" else set()),
        owners=list(spec.owners),
        code_version=code_version(
            "feedback", fb, spec.quality.allow_new_classes, code=(source.python,) if source.python else ()
        ),
        partitions_def=parts,
        io_manager_key=IO_MANAGER_KEY,
        check_specs=checks,
        output_required=False,
        required_resource_keys={IO_MANAGER_KEY},
        metadata={
            Meta.PIPELINE: spec.name,
            Meta.SOURCE: source.model_dump(exclude_none=True),
            Meta.PII: sorted(pii),
        },
    )
    def _feedback_asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        from mlops_dagster.quality.baseline import champion_baseline
        from mlops_dagster.quality.runner import run_expectations

        partition = context.partition_key if parts else None
        quarantine = Quarantine.for_io_manager(getattr(context.resources, IO_MANAGER_KEY))
        baseline = champion_baseline(context.instance, spec.name)
        batch = BatchSource.feedback(spec)
        try:
            raw = read_source(batch, context, partition)
        except DataError as e:
            yield from unreadable_batch(spec, context, batch, quarantine, key, partition, baseline, e)
            return
        expected = expected_types(spec, baseline)
        guard = guard_frame(raw, roles, fb.entity, fb.timestamp, partition, expected, allow_new_columns=True)
        label = label_outcome(raw, fb.label, spec.model.task, baseline, spec.quality.allow_new_classes, pii)
        outcomes = run_expectations(raw, fb.expectations) if fb.expectations else []
        results = [
            guard_result(key, guard, partition, baseline.version),
            builtin_result(key, label, partition, baseline.version, blocking=True),
            *expectation_results(key, outcomes, partition, fb.expectations, pii, set(roles)),
        ]
        yield from settle_batch(
            context,
            spec,
            key,
            partition,
            raw,
            results,
            quarantine,
            timestamp=fb.timestamp,
            pii=pii,
            expectations=(fb.expectations, ("feedback", "expectations")),
        )

    return _feedback_asset

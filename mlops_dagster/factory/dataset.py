"""The `<p>/dataset` asset: read a partition from the source, run its blocking checks, store or quarantine."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlops_dagster.errors import DataError
from mlops_dagster.factory.keys import Meta, dataset_key
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.quality_checks import (
    champion_dataset_schema,
    check_specs,
    coerce_timestamps,
    expectation_results,
    failure_report,
    guard_result,
)
from mlops_dagster.factory.versions import code_version
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.io.sources import read_source, source_bytes
from mlops_dagster.quality.schema_guard import guard_batch
from mlops_dagster.spec.models import PipelineSpec

IO_MANAGER_KEY = "mlops_io_manager"


def partitions_def(spec: PipelineSpec) -> dg.DailyPartitionsDefinition | None:
    if spec.dataset.partitions is None:
        return None
    daily = spec.dataset.partitions.daily
    return dg.DailyPartitionsDefinition(
        start_date=daily.start.isoformat(),
        end_date=daily.end.isoformat() if daily.end else None,
    )


def dataset_kinds(spec: PipelineSpec) -> set[str]:
    return {"pandas", "parquet"} | ({"duckdb"} if spec.dataset.source.kind == "sql" else set())


def build_dataset_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """One partition per run: quality checks are evaluated, and recorded, per partition."""
    parts = partitions_def(spec)
    key = dataset_key(spec.name)
    source = spec.dataset.source
    checks = check_specs(key, spec.quality.expectations, parts, schema_guard=True)

    @dg.asset(
        key=key,
        group_name=spec.name,
        description=(
            f"Raw dataset of `{spec.name}` from its {source.kind} source, checked by "
            f"{len(checks)} blocking quality check(s). {spec.description}"
        ).strip(),
        kinds=dataset_kinds(spec),
        owners=list(spec.owners),
        code_version=code_version(spec.dataset, spec.quality, code=(source.python,) if source.python else ()),
        partitions_def=parts,
        io_manager_key=IO_MANAGER_KEY,
        check_specs=checks,
        output_required=False,
        required_resource_keys={IO_MANAGER_KEY},
        metadata={Meta.PIPELINE: spec.name, Meta.SOURCE: source.model_dump(exclude_none=True)},
    )
    def _dataset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        from mlops_dagster.quality.runner import run_expectations

        partition = context.partition_key if parts else None
        quarantine = Quarantine.for_io_manager(getattr(context.resources, IO_MANAGER_KEY))
        try:
            raw = read_source(spec, context, partition)
        except DataError as e:
            raw_bytes, suffix = source_bytes(spec, partition)
            if raw_bytes is not None:
                where = quarantine.hold(
                    key,
                    partition,
                    {"reasons": [str(e)], "run_id": context.run_id},
                    raw=raw_bytes,
                    raw_suffix=suffix,
                )
                context.log.error(f"{e}; the file is kept in quarantine at {where}")
            raise
        champion_version, champion_schema = champion_dataset_schema(context.instance, spec.name)
        guard = guard_batch(raw, spec, partition, champion_schema, spec.quality.allow_new_columns)
        outcomes = run_expectations(raw, spec.quality.expectations) if spec.quality.expectations else []
        results = [
            guard_result(key, guard, partition, champion_version),
            *expectation_results(key, outcomes, partition),
        ]
        if all(r.passed for r in results):
            df = coerce_timestamps(raw, spec.dataset.timestamp).reset_index(drop=True)
            if quarantine.release(key, partition):
                context.log.info(
                    f"{key.to_user_string()} {partition or ''}: passed; released from quarantine"
                )
            yield versioned_output(df, frame_metadata(df), content_hash(df))
        else:
            report = failure_report(results, context.run_id)
            where = quarantine.hold(key, partition, report, frame=raw)
            context.log.error(
                f"{key.to_user_string()} {partition or ''}: {len(report['failed_checks'])} blocking "
                f"check(s) failed; batch quarantined at {where}: " + "; ".join(report["reasons"])
            )
        yield from results

    return _dataset

"""Blocking quality checks: the check specs of an asset and how a batch's outcomes become results.

One `AssetCheckSpec` per declared expectation (named after it) plus the built-in schema guard on
datasets. The checks are evaluated inside the asset's own step, so Great Expectations runs once per
batch (one ephemeral context, one validation) and the data is read once; a failed blocking check fails
the step, the batch goes to quarantine and nothing downstream runs.
"""

import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.factory.keys import Meta
from mlops_dagster.quality.expectations import check_names
from mlops_dagster.quality.schema_guard import GUARD_CHECK_NAME, GuardResult
from mlops_dagster.spec.models import ExpectationSpec

SAMPLE_SIZE = 20


def _describe(expectation: ExpectationSpec) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in expectation.kwargs.items())
    return f"Great Expectations `{expectation.type}({args})`"


def check_specs(
    key: dg.AssetKey,
    expectations: Sequence[ExpectationSpec],
    partitions_def: dg.PartitionsDefinition | None,
    schema_guard: bool,
) -> list[dg.AssetCheckSpec]:
    """The blocking checks of one asset (per partition when the asset is partitioned)."""
    specs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # partitions_def on AssetCheckSpec is a preview feature
        if schema_guard:
            specs.append(
                dg.AssetCheckSpec(
                    GUARD_CHECK_NAME,
                    asset=key,
                    blocking=True,
                    partitions_def=partitions_def,
                    description="Built-in: columns, dtypes and keys against the champion's training schema; "
                    "entity not null, no duplicate entity+timestamp, timestamps inside the partition.",
                )
            )
        for name, expectation in zip(check_names(expectations), expectations, strict=True):
            specs.append(
                dg.AssetCheckSpec(
                    name,
                    asset=key,
                    blocking=True,
                    partitions_def=partitions_def,
                    description=_describe(expectation),
                    metadata={Meta.EXPECTATION: expectation.model_dump()},
                )
            )
    return specs


def guard_result(
    key: dg.AssetKey, guard: GuardResult, partition: str | None, champion_version: str | None
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=GUARD_CHECK_NAME,
        passed=guard.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if guard.passed else "; ".join(guard.problems)[:1000],
        metadata={
            Meta.PROBLEMS: dg.MetadataValue.json(guard.problems),
            Meta.SCHEMA: dg.MetadataValue.json(guard.schema),
            Meta.CHAMPION: champion_version or "",
            Meta.PARTITION: partition or "",
        },
    )


def expectation_results(
    key: dg.AssetKey, outcomes: Sequence[Any], partition: str | None
) -> list[dg.AssetCheckResult]:
    results = []
    for o in outcomes:
        metadata: dict[str, Any] = {
            Meta.PARTITION: partition or "",
            "observed_value": dg.MetadataValue.json({"value": o.observed_value}),
            "unexpected_count": o.unexpected_count if o.unexpected_count is not None else -1,
            "unexpected_percent": float(o.unexpected_percent) if o.unexpected_percent is not None else -1.0,
            "unexpected_sample": dg.MetadataValue.json(list(o.unexpected_sample)[:SAMPLE_SIZE]),
            "gx_result": dg.MetadataValue.json(o.result),
        }
        description = None
        if o.error:
            description = o.error
        elif not o.success:
            pct = f"{o.unexpected_percent:.2f}%" if o.unexpected_percent is not None else "?"
            where = f"column `{o.column}`" if o.column else "table"
            description = f"{o.expectation_type} failed on {where}: {o.unexpected_count} unexpected ({pct})"
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=o.check_name,
                passed=bool(o.success),
                severity=dg.AssetCheckSeverity.ERROR,
                description=description,
                metadata=metadata,
            )
        )
    return results


def failure_report(results: Sequence[dg.AssetCheckResult], run_id: str) -> dict[str, Any]:
    """What quarantine keeps with a failed batch: which rules failed and why."""
    failed = [r for r in results if not r.passed]
    return {
        "reasons": [f"{r.check_name}: {r.description or 'failed'}" for r in failed],
        "failed_checks": [r.check_name for r in failed],
        "passed_checks": [r.check_name for r in results if r.passed],
        "run_id": run_id,
        "checks": {r.check_name: {k: getattr(v, "value", v) for k, v in r.metadata.items()} for r in results},
    }


def champion_dataset_schema(
    instance: dg.DagsterInstance, pipeline: str
) -> tuple[str | None, dict[str, str] | None]:
    """The raw dataset schema the current champion was trained on (from its candidate record)."""
    from mlops_dagster.registry.records import candidate_metadata, current_champion

    champion = current_champion(instance, pipeline)
    if champion is None:
        return None, None
    schema = (candidate_metadata(instance, pipeline, champion.version) or {}).get(Meta.DATASET_SCHEMA)
    return champion.version, dict(schema) if isinstance(schema, dict) else None


def coerce_timestamps(df: pd.DataFrame, column: str) -> pd.DataFrame:
    if column in df.columns and not pd.api.types.is_datetime64_any_dtype(df[column]):
        return df.assign(**{column: pd.to_datetime(df[column])})
    return df

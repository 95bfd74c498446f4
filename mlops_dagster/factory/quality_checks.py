"""Quality checks: the check specs of an asset and how a batch's outcomes become results.

One `AssetCheckSpec` per declared expectation (named after it), plus the built-in checks on datasets:
the schema guard, the label check and the checks inferred from the champion's training profile
(`mlops_dagster.quality.builtin_checks`). The checks are evaluated inside the asset's own step, so
Great Expectations runs once per batch (one ephemeral context, one validation) and the data is read
once; a failed blocking check fails the step, the batch goes to quarantine and nothing downstream runs.

A check that could not run because of the spec (an expectation GX rejects, a column no batch ever had)
is failed with `mlops/failure_kind: config`: the run fails, but the batch is not quarantined.
"""

import warnings
from collections.abc import Collection, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.keys import Meta
from mlops_dagster.quality.builtin_checks import (
    DOMAIN_CHECK_NAME,
    LABEL_CHECK_NAME,
    PRESENCE_CHECK_NAME,
    RANGE_CHECK_NAME,
    CheckOutcome,
)
from mlops_dagster.quality.expectations import check_names, expectation_columns
from mlops_dagster.quality.pii import mask_values
from mlops_dagster.quality.schema_guard import GUARD_CHECK_NAME, GuardResult
from mlops_dagster.spec.models import ExpectationSpec, PipelineSpec

SAMPLE_SIZE = 20
DATA, CONFIG = "data", "config"  # values of Meta.FAILURE_KIND


def _describe(expectation: ExpectationSpec) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in expectation.kwargs.items())
    return f"Great Expectations `{expectation.type}({args})`"


def _severity(blocking: bool) -> str:
    return "blocking" if blocking else "a warning"


def _builtin_specs(spec: PipelineSpec, label_only: str | None = None) -> list[tuple[str, bool, str]]:
    """(name, blocking, description) of the built-in dataset checks the spec leaves on; with
    `label_only`, the label check on that column alone (the feedback's: it has no features to profile)."""
    label, inferred = label_only or spec.dataset.label, spec.quality.inferred
    classes = (
        " and among the classes the champion was trained on"
        + (" (new classes allowed: quality.allow_new_classes)" if spec.quality.allow_new_classes else "")
        if spec.model.task == "classification"
        else ""
    )
    out = [(LABEL_CHECK_NAME, True, f"Built-in: label `{label}` present and never null{classes}.")]
    if label_only:
        return out
    if inferred.presence.enabled:
        out.append(
            (
                PRESENCE_CHECK_NAME,
                True,
                "Inferred from the champion's training profile: no column's share of nulls rises by more "
                f"than {inferred.presence.max_null_increase:g} (quality.inferred.presence).",
            )
        )
    if inferred.domain.enabled:
        out.append(
            (
                DOMAIN_CHECK_NAME,
                True,
                "Inferred from the champion's training profile: at most "
                f"{inferred.domain.max_unseen_share:g} of a categorical column's values are ones the "
                "champion never saw (quality.inferred.domain).",
            )
        )
    if inferred.range.enabled:
        out.append(
            (
                RANGE_CHECK_NAME,
                inferred.range.blocking,
                f"Inferred from the champion's training profile ({_severity(inferred.range.blocking)}): "
                f"numbers within the training [min, max] widened by {inferred.range.tolerance:g} x the "
                "range on each side (quality.inferred.range).",
            )
        )
    return out


def check_specs(
    key: dg.AssetKey,
    expectations: Sequence[ExpectationSpec],
    partitions_def: dg.PartitionsDefinition | None,
    schema_guard: bool,
    pipeline: PipelineSpec | None = None,
    label_only: str | None = None,
) -> list[dg.AssetCheckSpec]:
    """The checks of one asset (per partition when the asset is partitioned); with `pipeline`, its
    dataset's built-in label and inferred checks too, or with `label_only` as well, the label check
    on that column alone (the feedback's)."""
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
                    description="Built-in: the batch can be read; columns, dtypes and keys against the "
                    "champion's training schema; entity not null, no duplicate entity+timestamp, timestamps "
                    "inside the partition.",
                )
            )
        for name, blocking, description in _builtin_specs(pipeline, label_only) if pipeline else []:
            specs.append(
                dg.AssetCheckSpec(
                    name, asset=key, blocking=blocking, partitions_def=partitions_def, description=description
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


def _where(partition: str | None) -> str:
    return f"partition {partition}: " if partition else ""


def guard_result(
    key: dg.AssetKey, guard: GuardResult, partition: str | None, champion_version: str | None
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=GUARD_CHECK_NAME,
        passed=guard.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if guard.passed else (_where(partition) + "; ".join(guard.problems))[:1000],
        metadata={
            Meta.PROBLEMS: dg.MetadataValue.json(guard.problems),
            Meta.SCHEMA: dg.MetadataValue.json(guard.schema),
            Meta.CHAMPION: champion_version or "",
            Meta.PARTITION: partition or "",
            Meta.FAILURE_KIND: DATA,
        },
    )


def builtin_result(
    key: dg.AssetKey,
    outcome: CheckOutcome,
    partition: str | None,
    champion_version: str | None,
    blocking: bool,
) -> dg.AssetCheckResult:
    """A built-in check's result; a failed non-blocking one is a warning."""
    metadata: dict[str, Any] = {
        Meta.PROBLEMS: dg.MetadataValue.json(outcome.problems),
        Meta.CHAMPION: champion_version or "",
        Meta.PARTITION: partition or "",
        Meta.FAILURE_KIND: DATA,
        "details": dg.MetadataValue.json(outcome.details),
    }
    if outcome.note:
        metadata[Meta.NOTE] = outcome.note
    description = outcome.note
    if not outcome.passed:
        description = (_where(partition) + "; ".join(outcome.problems))[:1000]
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def is_config_error(outcome: Any, known_columns: Collection[str]) -> bool:
    """Whether a failed expectation is the spec's fault: GX could not run it, or it names a column
    that is neither in the batch nor one the data is known to have (`known_columns`: the champion's
    schema and the spec's declared columns)."""
    if outcome.success:
        return False
    if outcome.config_error:
        return True
    return bool(outcome.missing_columns) and not set(outcome.missing_columns) & set(known_columns)


def expectation_results(
    key: dg.AssetKey,
    outcomes: Sequence[Any],
    partition: str | None,
    expectations: Sequence[ExpectationSpec] = (),
    pii: Collection[str] = (),
    known_columns: Collection[str] = (),
) -> list[dg.AssetCheckResult]:
    """One result per outcome. Values of `pii` columns are masked in the samples and GX's result."""
    masked = {
        name
        for name, e in zip(check_names(expectations), expectations, strict=True)
        if {str(c) for c in expectation_columns(e.kwargs)} & set(pii)
    }
    results = []
    for o in outcomes:
        hide = o.check_name in masked
        config = is_config_error(o, known_columns)
        sample = list(o.unexpected_sample)[:SAMPLE_SIZE]
        metadata: dict[str, Any] = {
            Meta.PARTITION: partition or "",
            Meta.FAILURE_KIND: CONFIG if config else DATA,
            "observed_value": dg.MetadataValue.json(
                {"value": "<pii>" if hide and o.observed_value is not None else o.observed_value}
            ),
            "unexpected_count": o.unexpected_count if o.unexpected_count is not None else -1,
            "unexpected_percent": float(o.unexpected_percent) if o.unexpected_percent is not None else -1.0,
            "unexpected_sample": dg.MetadataValue.json(mask_values(sample) if hide else sample),
            "gx_result": dg.MetadataValue.json(_masked_result(o.result) if hide else o.result),
        }
        description = None
        if o.error:
            description = (
                f"configuration error (the spec, not the data): {o.error}"
                if config
                else _where(partition) + o.error
            )
        elif not o.success:
            pct = f"{o.unexpected_percent:.2f}%" if o.unexpected_percent is not None else "?"
            where = f"column `{o.column}`" if o.column else "table"
            failed = f"{o.expectation_type} failed on {where}: {o.unexpected_count} unexpected ({pct})"
            description = _where(partition) + failed
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


def _masked_result(result: dict[str, Any]) -> dict[str, Any]:
    """GX's result dict of an expectation on a pii column: counts kept, every listed value dropped."""
    return {k: v for k, v in result.items() if isinstance(v, int | float | bool) or v is None}


def failure_kind(result: dg.AssetCheckResult) -> str:
    entry = result.metadata.get(Meta.FAILURE_KIND)
    return str(getattr(entry, "value", entry) or DATA)


def blocking_failures(results: Sequence[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """The failed results that refuse the batch (severity ERROR); failed warnings do not."""
    return [r for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]


def failure_report(
    results: Sequence[dg.AssetCheckResult], run_id: str, pii: Collection[str] = ()
) -> dict[str, Any]:
    """What quarantine keeps with a failed batch: which rules failed and why (pii columns named, never
    their values)."""
    failed = [r for r in results if not r.passed]
    report: dict[str, Any] = {
        "reasons": [f"{r.check_name}: {r.description or 'failed'}" for r in failed],
        "failed_checks": [r.check_name for r in failed],
        "passed_checks": [r.check_name for r in results if r.passed],
        "run_id": run_id,
        "checks": {r.check_name: {k: getattr(v, "value", v) for k, v in r.metadata.items()} for r in results},
    }
    if pii:
        report["pii"] = sorted(pii)
    return report


def coerce_timestamps(df: pd.DataFrame, column: str) -> pd.DataFrame:
    if column in df.columns and not pd.api.types.is_datetime64_any_dtype(df[column]):
        return df.assign(**{column: pd.to_datetime(df[column])})
    return df

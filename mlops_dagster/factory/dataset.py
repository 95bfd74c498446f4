"""The `<p>/dataset` asset: read a partition from the source, run its checks, store or quarantine.

Declared pii columns are hashed before anything is stored (the dataset, a quarantined batch) and masked
wherever the batch is shown (preview, check samples, quarantine report), so raw values stay at the source.
"""

from collections.abc import Collection, Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.errors import DataError, SpecError, SpecIssue
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.quality_checks import (
    CONFIG,
    blocking_failures,
    builtin_result,
    check_specs,
    coerce_timestamps,
    expectation_results,
    failure_kind,
    failure_report,
    guard_result,
)
from mlops_dagster.factory.versions import code_version
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.io.sources import BatchSource, read_source, source_bytes
from mlops_dagster.keys import IO_MANAGER_KEY, Meta, Tags, dataset_key
from mlops_dagster.quality.baseline import Baseline
from mlops_dagster.quality.builtin_checks import (
    DOMAIN_CHECK_NAME,
    PRESENCE_CHECK_NAME,
    RANGE_CHECK_NAME,
    domain_outcome,
    label_outcome,
    presence_outcome,
    range_outcome,
)
from mlops_dagster.quality.expectations import check_names
from mlops_dagster.quality.pii import hash_columns
from mlops_dagster.quality.schema_guard import GuardResult, guard_batch
from mlops_dagster.spec.models import ExpectationSpec, PipelineSpec


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


def builtin_results(
    spec: PipelineSpec, key: dg.AssetKey, raw: pd.DataFrame, partition: str | None, baseline: Baseline
) -> list[dg.AssetCheckResult]:
    """The label check and the enabled inferred checks on one batch."""
    q, ds = spec.quality, spec.dataset
    label = label_outcome(raw, ds.label, spec.model.task, baseline, q.allow_new_classes, spec.pii_columns)
    outcomes = [(label, True)]
    if q.inferred.presence.enabled:
        outcomes.append((presence_outcome(raw, baseline, q.inferred.presence), True))
    if q.inferred.domain.enabled:
        outcomes.append((domain_outcome(raw, baseline, q.inferred.domain), True))
    if q.inferred.range.enabled:
        outcomes.append((range_outcome(raw, baseline, q.inferred.range), q.inferred.range.blocking))
    return [builtin_result(key, o, partition, baseline.version, blocking) for o, blocking in outcomes]


def known_columns(spec: PipelineSpec, baseline: Baseline) -> set[str]:
    """Columns the data is known to have: an expectation naming one that a batch lacks is the data's fault."""
    ds = spec.dataset
    declared = {ds.entity, ds.timestamp, ds.label, *(spec.model.features or [])}
    return declared | set(baseline.schema or {})


def _config_issues(
    spec: PipelineSpec,
    results: list[dg.AssetCheckResult],
    expectations: list[ExpectationSpec],
    field: tuple[str, ...],
) -> list[SpecIssue]:
    """The spec problems behind config-kind failures, each naming its expectation's file, line and field
    (`field`: where `expectations` are declared, `quality.expectations` or `feedback.expectations`)."""
    names = check_names(expectations)
    return [
        spec.issue((*field, names.index(r.check_name)), f"{r.check_name}: {r.description}")
        for r in results
        if not r.passed and failure_kind(r) == CONFIG and r.check_name in names
    ]


def build_dataset_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """One partition per run: quality checks are evaluated, and recorded, per partition."""
    parts = partitions_def(spec)
    key = dataset_key(spec.name)
    source = spec.dataset.source
    checks = check_specs(key, spec.quality.expectations, parts, schema_guard=True, pipeline=spec)
    pii = spec.pii_columns
    warn = {RANGE_CHECK_NAME} if not spec.quality.inferred.range.blocking else set()
    inferred = {PRESENCE_CHECK_NAME, DOMAIN_CHECK_NAME, RANGE_CHECK_NAME} & {c.name for c in checks}

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "dataset"),
        group_name=spec.name,
        description=(
            f"Raw dataset of `{spec.name}` from its {source.kind} source, checked by "
            f"{len(checks) - len(warn & inferred)} blocking quality check(s)"
            + (f" and {len(warn & inferred)} warning(s)" if warn & inferred else "")
            + (f"; pii columns {sorted(pii)} are stored hashed" if pii else "")
            + f". {spec.description}"
        ).strip(),
        kinds=dataset_kinds(spec),
        owners=list(spec.owners),
        code_version=code_version(spec.dataset, spec.quality, code=(source.python,) if source.python else ()),
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
    def _dataset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        from mlops_dagster.quality.baseline import champion_baseline
        from mlops_dagster.quality.runner import run_expectations

        partition = context.partition_key if parts else None
        quarantine = Quarantine.for_io_manager(getattr(context.resources, IO_MANAGER_KEY))
        baseline = champion_baseline(context.instance, spec.name)
        batch = BatchSource.dataset(spec)
        try:
            raw = read_source(batch, context, partition)
        except DataError as e:
            yield from unreadable_batch(spec, context, batch, quarantine, key, partition, baseline, e)
            return
        guard = guard_batch(raw, spec, partition, baseline.schema, spec.quality.allow_new_columns)
        outcomes = run_expectations(raw, spec.quality.expectations) if spec.quality.expectations else []
        results = [
            guard_result(key, guard, partition, baseline.version),
            *builtin_results(spec, key, raw, partition, baseline),
            *expectation_results(
                key, outcomes, partition, spec.quality.expectations, pii, known_columns(spec, baseline)
            ),
        ]
        yield from settle_batch(
            context,
            spec,
            key,
            partition,
            raw,
            results,
            quarantine,
            timestamp=spec.dataset.timestamp,
            pii=pii,
            expectations=(spec.quality.expectations, ("quality", "expectations")),
        )

    return _dataset


def settle_batch(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    key: dg.AssetKey,
    partition: str | None,
    raw: pd.DataFrame,
    results: list[dg.AssetCheckResult],
    quarantine: Quarantine,
    *,
    timestamp: str,
    pii: Collection[str],
    expectations: tuple[list[ExpectationSpec], tuple[str, ...]],
) -> Iterator[Any]:
    """What becomes of a checked batch (the dataset's or the feedback's): stored hashed and released from
    quarantine when no blocking check failed; else held in quarantine (a data failure) or left out (the
    spec's fault). Yields the output, if any, then the check results.

    Raises:
        SpecError: a check failed as a configuration error (`expectations`: the declared list and its
            field path), naming its file, line and field.
    """
    refused = blocking_failures(results)
    where = f"{key.to_user_string()} {partition or ''}".strip()
    if not refused:
        df = hash_columns(coerce_timestamps(raw, timestamp).reset_index(drop=True), pii)
        if quarantine.release(key, partition):
            context.log.info(f"{where}: passed; released from quarantine")
            audit_batch(context, spec, key, "release", partition, [])
        yield versioned_output(df, frame_metadata(df, pii), content_hash(df))
    elif any(failure_kind(r) != CONFIG for r in refused):
        report = failure_report(results, context.run_id, pii)
        held = quarantine.hold(key, partition, report, frame=hash_columns(raw, pii))
        audit_batch(context, spec, key, "quarantine", partition, report["reasons"])
        context.log.error(
            f"{where}: {len(refused)} blocking check(s) failed; batch quarantined at {held}: "
            + "; ".join(report["reasons"])
        )
    else:
        context.log.error(
            f"{where}: the quality spec could not run on this batch (a configuration error, not bad "
            "data); the batch is not quarantined: fix the spec and materialize the partition again"
        )
    yield from results
    issues = _config_issues(spec, results, *expectations)
    if issues:
        raise SpecError(issues)


def unreadable_batch(
    spec: PipelineSpec,
    context: dg.AssetExecutionContext,
    batch: BatchSource,
    quarantine: Quarantine,
    key: dg.AssetKey,
    partition: str | None,
    baseline: Baseline,
    error: DataError,
) -> Iterator[dg.AssetCheckResult]:
    """A batch that cannot be read: kept in quarantine (the raw file, unless it may hold pii) and refused
    by the schema guard, whose failed evaluation the quality sensor alerts on. A missing uri file or a
    failed query is not a batch: the error is raised as it is."""
    kind = batch.kind
    raw_bytes, suffix = source_bytes(batch, partition)
    if kind == "sql" or (kind == "uri" and raw_bytes is None):
        raise error
    report: dict[str, Any] = {"reasons": [f"mlops_schema_guard: {error}"], "run_id": context.run_id}
    report.update(failed_checks=["mlops_schema_guard"], passed_checks=[])
    if raw_bytes is not None and spec.pii_columns:
        # Raw bytes cannot be masked: with pii declared the file is not copied, only identified.
        import hashlib

        report["source_sha256"] = hashlib.sha256(raw_bytes).hexdigest()
        report["note"] = "the source may hold pii: the raw file is not copied into quarantine"
        raw_bytes = None
    where = quarantine.hold(key, partition, report, raw=raw_bytes, raw_suffix=suffix)
    audit_batch(context, spec, key, "quarantine", partition, report["reasons"])
    context.log.error(f"{error}; quarantined at {where}")
    yield guard_result(key, GuardResult(False, [str(error)]), partition, baseline.version)


def audit_batch(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    key: dg.AssetKey,
    action: str,
    partition: str | None,
    reasons: Any,
) -> None:
    """A batch of `key` quarantined or released, in the pipeline's audit log (a failed append is a
    warning)."""
    from mlops_dagster.audit import record_decision
    from mlops_dagster.environments import environment_name

    record_decision(
        spec.name,
        action,
        version=None,
        reasons=[str(r) for r in reasons],
        trigger=context.run.tags.get(Tags.TRIGGER, "manual"),
        run_id=context.run_id,
        environment=environment_name(spec),
        extra={"asset": key.to_user_string(), "partition": partition},
        log=context.log,
    )

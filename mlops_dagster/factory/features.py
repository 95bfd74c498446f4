"""The `features/<g>` asset: one per feature group, shared by every consumer pipeline."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.quality_checks import (
    CONFIG,
    blocking_failures,
    check_specs,
    expectation_results,
    failure_kind,
    failure_report,
)
from mlops_dagster.factory.versions import code_version
from mlops_dagster.features.groups import run_transform
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.keys import FEATURES_GROUP, IO_MANAGER_KEY, Meta, dataset_key, feature_key
from mlops_dagster.spec.models import FeatureGroupSpec


def build_feature_asset(group: FeatureGroupSpec) -> dg.AssetsDefinition:
    key = feature_key(group.name)
    ins = {f"{p}_dataset": dg.AssetIn(key=dataset_key(p)) for p in group.inputs}
    consumers = ", ".join(f"`{c}`" for c in group.consumers) or "none"
    checks = check_specs(key, group.quality.expectations, None, schema_guard=False)

    @dg.asset(
        key=key,
        group_name=FEATURES_GROUP,
        description=(
            f"{group.description}\n\nInputs: {', '.join(group.inputs)}. Consumers: {consumers}. "
            f"PII (hashed): {', '.join(group.pii) or 'none'}."
        ).strip(),
        kinds={"pandas", "parquet"},
        owners=list(group.owners),
        ins=ins,
        code_version=code_version(
            group.model_dump(exclude={"quality", "description", "owners"}), code=(group.transform,)
        ),
        io_manager_key=IO_MANAGER_KEY,
        metadata={Meta.CONSUMERS: list(group.consumers), Meta.PII: list(group.pii)},
        check_specs=checks,
        output_required=False,
        required_resource_keys={IO_MANAGER_KEY},
    )
    def _feature_group(context: dg.AssetExecutionContext, **inputs: pd.DataFrame) -> Iterator[Any]:
        frames = [inputs[name] for name in ins]
        source = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        out = run_transform(group, source)  # pii columns come out hashed
        if not checks:
            yield versioned_output(out, frame_metadata(out, group.pii), content_hash(out))
            return
        from mlops_dagster.quality.runner import run_expectations

        outcomes = run_expectations(out, group.quality.expectations)
        results = expectation_results(key, outcomes, None, group.quality.expectations, group.pii)
        quarantine = Quarantine.for_io_manager(getattr(context.resources, IO_MANAGER_KEY))
        refused = blocking_failures(results)
        if not refused:
            quarantine.release(key, None)
            yield versioned_output(out, frame_metadata(out, group.pii), content_hash(out))
        elif any(failure_kind(r) != CONFIG for r in refused):
            report = failure_report(results, context.run_id, group.pii)
            where = quarantine.hold(key, None, report, frame=out)
            context.log.error(
                f"{key.to_user_string()}: blocking check(s) failed; output quarantined at {where}: "
                + "; ".join(report["reasons"])
            )
        yield from results
        config = [r for r in refused if failure_kind(r) == CONFIG]
        if config:  # the group's quality spec cannot run: not the data's fault, nothing quarantined
            file = str(group.source_file) if group.source_file else f"<feature group {group.name}>"
            field = f"feature_groups[{group.name}].quality.expectations"
            raise SpecError(
                [SpecIssue(file, None, field, f"{r.check_name}: {r.description}") for r in config]
            )

    return _feature_group

"""The `<p>/drift_report` asset: Evidently's DataDriftPreset on a partition, for humans.

Decisions are the drift sensor's (fast path); this asset is the readable evidence: the HTML report is
stored next to the data and linked from the metadata, with a per-column table and the drifted share.
"""

import dagster as dg
import pandas as pd

from mlops_dagster.errors import RegistryError
from mlops_dagster.factory.dataset import IO_MANAGER_KEY, partitions_def
from mlops_dagster.factory.keys import Meta, champion_key, dataset_key, drift_report_key
from mlops_dagster.factory.versions import code_version
from mlops_dagster.spec.models import PipelineSpec


def _table(summary) -> dg.TableMetadataValue:  # type: ignore[no-untyped-def]
    return dg.TableMetadataValue(
        records=[
            dg.TableRecord(
                {
                    "column": c.column,
                    "method": c.method,
                    "score": None if c.score is None else round(float(c.score), 6),
                    "threshold": None if c.threshold is None else float(c.threshold),
                    "drifted": bool(c.drifted),
                }
            )
            for c in summary.columns
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("method", "string"),
                dg.TableColumn("score", "float"),
                dg.TableColumn("threshold", "float"),
                dg.TableColumn("drifted", "bool"),
            ]
        ),
    )


def build_drift_report_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    key = drift_report_key(spec.name)

    @dg.asset(
        key=key,
        group_name=spec.name,
        description=(
            f"Evidently DataDriftPreset report of a `{spec.name}` dataset partition against the "
            "champion's reference sample (HTML next to the data, per-column table in metadata)."
        ),
        kinds={"evidently"},
        owners=list(spec.owners),
        partitions_def=partitions_def(spec),
        ins={"dataset": dg.AssetIn(key=dataset_key(spec.name))},
        deps=[champion_key(spec.name)],
        code_version=code_version(spec.monitoring.drift),
        required_resource_keys={IO_MANAGER_KEY},
    )
    def _drift_report(context: dg.AssetExecutionContext, dataset: pd.DataFrame) -> dg.MaterializeResult:
        from mlops_dagster.monitoring.report import run_drift_report
        from mlops_dagster.registry.records import current_champion
        from mlops_dagster.registry.reference import load_reference_sample

        champion = current_champion(context.instance, spec.name)
        if champion is None:
            raise RegistryError(f"{spec.name}: no champion yet, so no reference to report drift against")
        reference = load_reference_sample(spec.name, champion.version)
        columns = [c for c in reference.columns if c in dataset.columns]
        io = getattr(context.resources, IO_MANAGER_KEY)
        partition = context.partition_key if context.has_partition_key else None
        out_dir = io.asset_dir(key) / (partition or "latest")
        summary = run_drift_report(
            reference,
            dataset[columns],
            out_dir,
            columns=columns,
            title=f"{spec.name} {partition or ''} vs champion {champion.version}",
        )
        drifted = [c.column for c in summary.columns if c.drifted]
        context.log.info(
            f"{spec.name} {partition}: {len(drifted)}/{len(summary.columns)} drifted; "
            f"report at {summary.html_path}"
        )
        return dg.MaterializeResult(
            metadata={
                Meta.DRIFT_REPORT: dg.MetadataValue.path(str(summary.html_path)),
                Meta.DRIFT_TABLE: _table(summary),
                Meta.DRIFT_SHARE: float(summary.share_drifted),
                Meta.DRIFTED_COLUMNS: dg.MetadataValue.json(drifted),
                Meta.DATASET_DRIFT: bool(summary.dataset_drift),
                Meta.CHAMPION: champion.version,
                Meta.ROWS_REFERENCE: summary.rows_reference,
                Meta.ROWS_CURRENT: summary.rows_current,
            }
        )

    return _drift_report

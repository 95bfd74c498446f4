"""The `<p>/drift_report` asset: the drift decision on a partition, and Evidently's report behind it.

The decision is the drift sensor's own (`monitoring.decision.decide_drift` with the spec's
`monitoring.drift` settings, on the champion's reference profile): the asset records it as
`mlops/dataset_drift`, `mlops/drift_share` and the per-column table, so the report can never contradict
a retrain. Evidently's DataDriftPreset, configured with the same per-column methods and thresholds and
drift share, is the readable evidence: its HTML is stored next to the data and linked from the metadata.
The asset's code version is those settings, so changing them makes earlier reports stale.
"""

import dagster as dg
import pandas as pd

from mlops_dagster.errors import RegistryError
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.dataset import partitions_def
from mlops_dagster.factory.versions import code_version
from mlops_dagster.keys import IO_MANAGER_KEY, Meta, champion_key, dataset_key, drift_report_key
from mlops_dagster.spec.models import PipelineSpec


def _table(decision, summary) -> dg.TableMetadataValue:  # type: ignore[no-untyped-def]
    """Our per-column verdicts (the ones the decision counted), with Evidently's verdict beside each."""
    evidently = {c.column: c.drifted for c in summary.columns}
    return dg.TableMetadataValue(
        records=[
            dg.TableRecord(
                {
                    "column": c.column,
                    "method": c.method,
                    "score": None if c.score is None else round(float(c.score), 6),
                    "threshold": None if c.threshold is None else float(c.threshold),
                    "drifted": bool(c.drifted),
                    "evidently_drifted": evidently.get(c.column),
                }
            )
            for c in decision.columns.values()
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("method", "string"),
                dg.TableColumn("score", "float"),
                dg.TableColumn("threshold", "float"),
                dg.TableColumn("drifted", "bool"),
                dg.TableColumn("evidently_drifted", "bool"),
            ]
        ),
    )


def report_code_version(spec: PipelineSpec) -> str:
    """The drift report's code version: exactly the settings its decision and its HTML use."""
    from mlops_dagster.monitoring.decision import DriftSettings

    return code_version("drift_report", DriftSettings.from_spec(spec.monitoring.drift).as_dict())


def build_drift_report_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    key = drift_report_key(spec.name)
    drift = spec.monitoring.drift

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "drift_report"),
        group_name=spec.name,
        description=(
            f"Drift of a `{spec.name}` dataset partition against the champion's reference: the drift "
            f"sensor's decision (more than {drift.max_drifted_share:.0%} of the columns drifted, with "
            "the spec's per-column methods and thresholds) and Evidently's HTML report with the same "
            "settings (next to the data, per-column table in metadata)."
        ),
        kinds={"evidently"},
        owners=list(spec.owners),
        partitions_def=partitions_def(spec),
        ins={"dataset": dg.AssetIn(key=dataset_key(spec.name))},
        deps=[champion_key(spec.name)],
        code_version=report_code_version(spec),
        required_resource_keys={IO_MANAGER_KEY},
    )
    def _drift_report(context: dg.AssetExecutionContext, dataset: pd.DataFrame) -> dg.MaterializeResult:
        from mlops_dagster.monitoring.decision import DriftSettings, decide_drift
        from mlops_dagster.monitoring.report import run_drift_report
        from mlops_dagster.registry.records import current_champion
        from mlops_dagster.registry.reference import load_reference_profile, load_reference_sample
        from mlops_dagster.registry.store import read_card

        champion = current_champion(context.instance, spec.name)
        if champion is None:
            raise RegistryError(f"{spec.name}: no champion yet, so no reference to report drift against")
        settings = DriftSettings.from_spec(spec.monitoring.drift)
        reference = load_reference_sample(spec.name, champion.version)
        # The champion's drift columns, as the sensor tests them (older cards: the sample's columns).
        columns = list(read_card(spec.name, champion.version).get("drift_columns") or reference.columns)
        decision = decide_drift(
            load_reference_profile(spec.name, champion.version), dataset, settings, columns=columns
        )
        shown = [c for c in columns if c in reference.columns and c in dataset.columns]
        io = getattr(context.resources, IO_MANAGER_KEY)
        partition = context.partition_key if context.has_partition_key else None
        summary = run_drift_report(
            reference[shown],
            dataset[shown],
            io.asset_dir(key) / (partition or "latest"),
            columns=shown,
            title=f"{spec.name} {partition or ''} vs champion {champion.version}",
            methods=settings.methods,
            thresholds=settings.thresholds,
            drift_share=settings.max_drifted_share,
        )
        context.log.info(
            f"{spec.name} {partition}: {len(decision.drifted_columns)}/{len(decision.columns)} columns "
            f"drifted ({decision.share_drifted:.0%}; drift when more than "
            f"{settings.max_drifted_share:.0%}): {'DRIFT' if decision.drift else 'no drift'}; report at "
            f"{summary.html_path}"
        )
        ours = {name: c.drifted for name, c in decision.columns.items()}
        differ = sorted(c.column for c in summary.columns if ours.get(c.column, c.drifted) != c.drifted)
        if differ:  # Evidently tests the reference sample, the decision the full reference profile
            context.log.info(f"Evidently's verdict differs from the decision's on {differ}")
        return dg.MaterializeResult(
            metadata={
                Meta.DRIFT_REPORT: dg.MetadataValue.path(str(summary.html_path)),
                Meta.DRIFT_TABLE: _table(decision, summary),
                Meta.DRIFT_SHARE: float(decision.share_drifted),
                Meta.DRIFTED_COLUMNS: dg.MetadataValue.json(decision.drifted_columns),
                Meta.DATASET_DRIFT: bool(decision.drift),
                Meta.CHAMPION: champion.version,
                Meta.ROWS_REFERENCE: summary.rows_reference,
                Meta.ROWS_CURRENT: summary.rows_current,
            }
        )

    return _drift_report

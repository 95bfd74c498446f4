"""The `<p>/predictions` asset (`serving.targets: [batch]`): the champion's predictions per dataset partition.

Each partition holds one row per dataset row: the entity and timestamp (the dataset's column names; pii
stays hashed, as the dataset stores it), `prediction`, for classification one `proba_<class>` column
per class, `model_version` and `partition` (`keys.PredictionColumns`). The features are built exactly
as for training: the dataset rows joined, as of each row's event time, with the pipeline's feature
groups (`factory.training.build_training_set`), then the columns the champion's candidate record lists
(`mlops/features`), prepared by `training.train.prepare_frame`.

The champion is read from the instance when a partition runs (`registry.records.current_champion`,
loaded by `registry.store.load_version`, which checks its hash and signature before unpickling it). It
is not an upstream asset on purpose: a promotion or rollback must not make every earlier partition
stale, since each partition keeps the version that actually predicted it, which `<p>/live_performance`
scores against the labels that arrive later. With no champion yet, a partition is skipped, not failed:
the automation requests predictions for every new dataset partition, also before the first
promotion; the skip is recorded as an observation of the partition with the reason, and nothing is
stored, so the partition stays missing until it is materialized again (a backfill) after a promotion.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.errors import DataError
from mlops_dagster.factory.automation import follows
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.dataset import partitions_def
from mlops_dagster.factory.metadata import frame_metadata, versioned_output
from mlops_dagster.factory.versions import code_version
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.keys import (
    IO_MANAGER_KEY,
    Meta,
    PredictionColumns,
    dataset_key,
    feature_key,
    predictions_key,
)
from mlops_dagster.spec.models import PipelineSpec

C = PredictionColumns


def proba_column(cls: Any) -> str:
    """The column of one class's probability: `proba_` and the class as `value_key` writes it."""
    from mlops_dagster.quality.baseline import value_key

    return f"{C.PROBA_PREFIX}{value_key(cls)}"


def prediction_frame(
    spec: PipelineSpec,
    model: Any,
    rows: pd.DataFrame,
    features: list[str],
    version: str,
    partition: str | None,
) -> pd.DataFrame:
    """The predictions of `model` (version `version`) for `rows`: the dataset rows joined with the
    feature groups as for training (`build_training_set`).

    Raises:
        DataError: the rows lack a feature the version was trained on.
    """
    from mlops_dagster.training.train import prepare_frame

    ds = spec.dataset
    missing = [c for c in features if c not in rows.columns]
    if missing:
        raise DataError(
            f"{spec.name}/predictions {partition or ''}: champion {version} was trained on feature(s) "
            f"{missing} that the dataset and feature groups no longer give (the spec's features changed "
            "since it was trained?); retrain, or roll back to a version trained on these columns"
        )
    X, _ = prepare_frame(spec, rows, features)
    out = rows[[ds.entity, ds.timestamp]].reset_index(drop=True)
    out[C.PREDICTION] = model.predict(X)
    classes = getattr(model, "classes_", None) if spec.model.task == "classification" else None
    if classes is not None and hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        for i, cls in enumerate(classes):
            out[proba_column(cls)] = proba[:, i].astype(float)
    out[C.MODEL_VERSION] = pd.Series(version, index=out.index, dtype="string")
    out[C.PARTITION] = pd.Series(partition, index=out.index, dtype="string")
    return out


def _no_champion(spec: PipelineSpec, partition: str | None) -> str:
    return (
        f"{spec.name} has no champion yet: nothing predicted"
        + (f" for partition {partition}" if partition else "")
        + "; materialize it again once a version is promoted"
    )


def build_predictions_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """`<p>/predictions`, partitioned like the dataset, following its partitions."""
    key = predictions_key(spec.name)
    parts = partitions_def(spec)
    ins = {"dataset": dg.AssetIn(key=dataset_key(spec.name))}
    ins.update({f"group_{g.name}": dg.AssetIn(key=feature_key(g.name)) for g in spec.feature_groups})
    pii = spec.pii_columns

    @dg.asset(
        key=key,
        op_tags=asset_op_tags(spec, "predictions"),
        group_name=spec.name,
        description=(
            f"The champion's predictions for each `{spec.name}` dataset partition (features joined as "
            "for training), with the version that made them. The champion is read from the registry "
            "when a partition runs, not declared upstream: a promotion or rollback does not make earlier "
            "partitions stale, each keeps the version that predicted it. Follows new dataset partitions "
            "(automation condition); skipped, with a note, while there is no champion."
        ),
        kinds={"scikitlearn", "pandas", "parquet"},
        owners=list(spec.owners),
        ins=ins,
        partitions_def=parts,
        code_version=code_version(
            "predictions", spec.dataset, spec.model.task, spec.model.features, list(spec.features)
        ),
        io_manager_key=IO_MANAGER_KEY,
        output_required=False,
        automation_condition=follows([dataset_key(spec.name)]),
        metadata={Meta.PIPELINE: spec.name, Meta.PII: sorted(pii)},
    )
    def _predictions(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame, **groups: pd.DataFrame
    ) -> Iterator[Any]:
        from mlops_dagster.factory.training import build_training_set
        from mlops_dagster.registry.records import candidate_metadata, current_champion
        from mlops_dagster.registry.store import load_version

        partition = context.partition_key if parts else None
        champion = current_champion(context.instance, spec.name)
        if champion is None:
            note = _no_champion(spec, partition)
            context.log.warning(note)
            yield dg.AssetObservation(asset_key=key, partition=partition, metadata={Meta.NOTE: note})
            return
        model = load_version(spec.name, champion.version, champion.sha256)
        frames = {name.removeprefix("group_"): df for name, df in groups.items()}
        rows = build_training_set(spec, dataset, frames)
        ds = spec.dataset
        record = candidate_metadata(context.instance, spec.name, champion.version) or {}
        recorded = record.get(Meta.FEATURES)
        features = (
            list(recorded)
            if isinstance(recorded, list)
            else [c for c in rows.columns if c not in (ds.entity, ds.timestamp, ds.label)]
        )
        out = prediction_frame(spec, model, rows, features, champion.version, partition)
        context.log.info(
            f"{spec.name} {partition or ''}: {len(out)} prediction(s) by champion {champion.version}"
        )
        metadata = {
            **frame_metadata(out, pii),
            Meta.CHAMPION: champion.version,
            Meta.MODEL_VERSIONS: dg.MetadataValue.json([champion.version]),
            Meta.PARTITION: partition or "",
        }
        yield versioned_output(out, metadata, content_hash(out))

    return _predictions

"""The `<p>/training_set` and `<p>/candidate` assets."""

from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.environments import environment_name
from mlops_dagster.errors import DataError
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.metadata import frame_metadata, metrics_metadata, versioned_output
from mlops_dagster.factory.versions import code_version
from mlops_dagster.features.groups import feature_columns
from mlops_dagster.features.pit import point_in_time_join
from mlops_dagster.io.parquet import content_hash
from mlops_dagster.keys import (
    IO_MANAGER_KEY,
    Meta,
    Tags,
    candidate_key,
    dataset_key,
    feature_key,
    training_set_key,
)
from mlops_dagster.spec.models import PipelineSpec


def dataset_feature_columns(spec: PipelineSpec, df: pd.DataFrame) -> list[str]:
    """`model.features`, else every dataset column but the keys, the label and the declared pii."""
    ds = spec.dataset
    if spec.model.features is not None:
        return list(spec.model.features)
    skip = {ds.entity, ds.timestamp, ds.label, *spec.pii_columns}
    return [c for c in df.columns if c not in skip]


def build_training_set(
    spec: PipelineSpec, dataset: pd.DataFrame, groups: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Label rows of the dataset joined, as of each row's event time, with the pipeline's feature groups."""
    from mlops_dagster.training.train import refuse_pii

    ds = spec.dataset
    own = dataset_feature_columns(spec, dataset)
    refuse_pii(spec, own)
    rows = dataset[[ds.entity, ds.timestamp, ds.label, *own]].dropna(subset=[ds.entity, ds.timestamp])
    if rows.empty:
        raise DataError(
            f"{spec.name}/training_set: no dataset rows with both {ds.entity!r} and {ds.timestamp!r}"
        )
    joins = []
    for group in spec.feature_groups:
        frame = groups[group.name]
        cols = feature_columns(group, frame)
        if ds.label in cols:
            raise DataError(
                f"features/{group.name} produces column {ds.label!r}, the label of {spec.name!r}: "
                "a label must never be a feature"
            )
        joins.append((group.name, frame, group.entity, group.timestamp, cols))
    return point_in_time_join(rows, ds.entity, ds.timestamp, joins)


def build_training_set_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    ins = {"dataset": dg.AssetIn(key=dataset_key(spec.name))}
    ins.update({f"group_{g.name}": dg.AssetIn(key=feature_key(g.name)) for g in spec.feature_groups})

    @dg.asset(
        key=training_set_key(spec.name),
        op_tags=asset_op_tags(spec, "training_set"),
        group_name=spec.name,
        description=f"Point-in-time correct join of `{spec.name}` labels with its feature groups.",
        kinds={"pandas", "parquet"},
        owners=list(spec.owners),
        ins=ins,
        code_version=code_version(spec.dataset, spec.model.features, [g.name for g in spec.feature_groups]),
        io_manager_key=IO_MANAGER_KEY,
    )
    def _training_set(
        context: dg.AssetExecutionContext, dataset: pd.DataFrame, **groups: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        frames = {name.removeprefix("group_"): df for name, df in groups.items()}
        out = build_training_set(spec, dataset, frames)
        metadata = {
            **frame_metadata(out, spec.pii_columns),
            Meta.DATASET_SCHEMA: dg.MetadataValue.json({str(c): str(t) for c, t in dataset.dtypes.items()}),
        }
        return versioned_output(out, metadata, content_hash(out))

    return _training_set


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, name: str) -> Any:
    event = instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event else None
    entry = mat.metadata.get(name) if mat else None
    return getattr(entry, "value", entry)


def _latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    mat = event.asset_materialization if event else None
    return mat.tags.get("dagster/data_version") if mat and mat.tags else None


def build_candidate_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    version = code_version(spec.model, spec.dataset.label, spec.dataset.timestamp)

    @dg.asset(
        key=candidate_key(spec.name),
        op_tags=asset_op_tags(spec, "candidate"),
        group_name=spec.name,
        description=(
            f"A newly trained `{spec.model.estimator}` for `{spec.name}`: every materialization is "
            "an immutable, sha256-addressed version in the BentoML model store, with a model card."
        ),
        kinds={"scikitlearn", "bentoml"},
        owners=list(spec.owners),
        ins={"training_set": dg.AssetIn(key=training_set_key(spec.name))},
        code_version=version,
    )
    def _candidate(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> dg.MaterializeResult:
        from mlops_dagster.quality.baseline import build_profile, label_classes
        from mlops_dagster.registry.card import build_card
        from mlops_dagster.registry.reference import reference_files
        from mlops_dagster.registry.store import save_version
        from mlops_dagster.training.train import train_candidate

        ds = spec.dataset
        features = [c for c in training_set.columns if c not in (ds.entity, ds.timestamp, ds.label)]
        result = train_candidate(spec, training_set, features)
        trigger = context.run.tags.get(Tags.TRIGGER, "manual")
        card, markdown = build_card(
            spec,
            metrics=result.metrics,
            features=result.features,
            schema=result.schema,
            cutoff=result.cutoff.isoformat(),
            train_rows=result.train_rows,
            holdout_rows=result.holdout_rows,
            training_data_version=content_hash(training_set),
            feature_group_versions={
                g.name: _latest_data_version(context.instance, feature_key(g.name))
                for g in spec.feature_groups
            },
            code_version=version,
            run_id=context.run_id,
            trigger=trigger,
        )
        card["dataset_schema"] = _latest_metadata(
            context.instance, training_set_key(spec.name), Meta.DATASET_SCHEMA
        )
        drift_columns = [c for c in result.features if c in (card["dataset_schema"] or {})]
        card["drift_columns"] = drift_columns
        # The baseline of the dataset's built-in checks (`quality.baseline`): no pii value is recorded.
        card["dataset_profile"] = build_profile(training_set, drift_columns, exclude=spec.pii_columns)
        card["classes"] = (
            label_classes(training_set[ds.label]) if spec.model.task == "classification" else None
        )
        card["data_end"] = pd.Timestamp(training_set[ds.timestamp].max()).date().isoformat()
        extra = reference_files(training_set, drift_columns)
        stored = save_version(spec.name, result.model, card, markdown, extra_files=extra)
        context.log.info(
            f"stored {stored.tag} (sha256 {stored.sha256}); "
            f"{spec.model.metric}={result.metrics[spec.model.metric]:.4f}"
        )
        return dg.MaterializeResult(
            metadata={
                Meta.VERSION: stored.version,
                Meta.SHA256: stored.sha256,
                Meta.HOLDOUT_CUTOFF: result.cutoff.isoformat(),
                Meta.FEATURES: dg.MetadataValue.json(result.features),
                Meta.ESTIMATOR: spec.model.estimator,
                Meta.TRAINING_DATA_VERSION: card["training_set_data_version"],
                Meta.MODEL_CARD: dg.MetadataValue.path(str(_card_file(stored.path))),
                Meta.TRIGGER: trigger,
                Meta.ENVIRONMENT: environment_name(spec),
                Meta.DATASET_SCHEMA: dg.MetadataValue.json(card["dataset_schema"] or {}),
                Meta.DRIFT_COLUMNS: dg.MetadataValue.json(drift_columns),
                Meta.DATASET_PROFILE: dg.MetadataValue.json(card["dataset_profile"]),
                **(
                    {Meta.CLASSES: dg.MetadataValue.json(card["classes"])}
                    if card["classes"] is not None
                    else {}
                ),
                Meta.TRAIN_ROWS: result.train_rows,
                Meta.HOLDOUT_ROWS: result.holdout_rows,
                **metrics_metadata(result.metrics),
            },
            data_version=dg.DataVersion(stored.version),
        )

    return _candidate


def _card_file(model_path: str) -> Any:
    from pathlib import Path

    from mlops_dagster.registry.store import CARD_MARKDOWN

    return Path(model_path) / CARD_MARKDOWN

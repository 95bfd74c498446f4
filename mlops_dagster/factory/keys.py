"""Asset keys, job and sensor names, and metadata / tag keys: defined once (CONTRACT.md section 4)."""

from __future__ import annotations

import dagster as dg

FEATURES_GROUP = "features"


def dataset_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "dataset"])


def feature_key(group: str) -> dg.AssetKey:
    return dg.AssetKey([FEATURES_GROUP, group])


def training_set_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "training_set"])


def candidate_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "candidate"])


def champion_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "champion"])


def bento_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "bento"])


def edge_bundle_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "edge_bundle"])


def drift_report_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "drift_report"])


def drift_report_job_name(pipeline: str) -> str:
    return f"{pipeline}__drift_report_job"  # the asset's op is already named <p>__drift_report


def retrain_job_name(pipeline: str) -> str:
    return f"{pipeline}__retrain"


def drift_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__drift_sensor"


def quality_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__quality_sensor"


class Meta:
    """Metadata keys written by the library (namespaced `mlops/`)."""

    VERSION = "mlops/version"
    SHA256 = "mlops/sha256"
    METRICS = "mlops/metrics"
    DECISION = "mlops/decision"
    REASONS = "mlops/reasons"
    PREVIOUS = "mlops/previous_version"
    MODEL_CARD = "mlops/model_card"
    HOLDOUT_CUTOFF = "mlops/holdout_cutoff"
    TRAINING_DATA_VERSION = "mlops/training_set_data_version"
    FEATURES = "mlops/features"
    ESTIMATOR = "mlops/estimator"
    PREVIEW = "mlops/preview"
    TRIGGER = "mlops/trigger"
    DATASET_SCHEMA = "mlops/dataset_schema"
    DRIFT_COLUMNS = "mlops/drift_columns"
    DRIFT_SHARE = "mlops/drift_share"
    DRIFTED_COLUMNS = "mlops/drifted_columns"


class Tags:
    """Run tags written by the library (prefix `mlops/`)."""

    TRIGGER = "mlops/trigger"
    DRIFTED_COLUMNS = "mlops/drifted_columns"
    DRIFT_SHARE = "mlops/drift_share"
    PARTITION = "mlops/partition"
    CHAMPION = "mlops/champion_version"
    PIPELINE = "mlops/pipeline"
    ACTION = "mlops/action"

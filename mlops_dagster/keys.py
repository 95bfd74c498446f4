"""Asset keys, job and sensor names, resource keys, and metadata / tag keys: defined once.

A leaf module (it imports only dagster): the registry, the CLI and the sensors read these names
without importing the factory. The names are CONTRACT.md section 4.
"""

from __future__ import annotations

import dagster as dg

FEATURES_GROUP = "features"

# Resource keys the factory binds and the assets, checks and sensors require.
IO_MANAGER_KEY = "mlops_io_manager"
NOTIFIER_KEY = "mlops_notifier"


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


def predictions_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "predictions"])


def feedback_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "feedback"])


def live_performance_key(pipeline: str) -> dg.AssetKey:
    return dg.AssetKey([pipeline, "live_performance"])


def drift_report_job_name(pipeline: str) -> str:
    return f"{pipeline}__drift_report_job"  # the asset's op is already named <p>__drift_report


def retrain_job_name(pipeline: str) -> str:
    return f"{pipeline}__retrain"


def drift_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__drift_sensor"


def quality_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__quality_sensor"


def packaging_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__packaging_sensor"


def performance_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__performance_sensor"


def automation_sensor_name(pipeline: str) -> str:
    return f"{pipeline}__automation_sensor"  # predictions follow the dataset, live performance its inputs


def performance_rollback_job_name(pipeline: str) -> str:
    return f"{pipeline}__performance_rollback"  # the champion alone, with action `rollback`


class Meta:
    """Metadata keys written by the library (namespaced `mlops/`), grouped by the asset or check writing them.

    The string values are a public contract (the UI, the CLI, tests and users read them): never change one.
    """

    # Registry: the candidate (training) and champion (promotion) records, read back by `registry.records`.
    VERSION = "mlops/version"
    SHA256 = "mlops/sha256"
    METRICS = "mlops/metrics"
    METRICS_TABLE = "mlops/metrics_table"
    DECISION = "mlops/decision"
    REASONS = "mlops/reasons"
    PREVIOUS = "mlops/previous_version"
    MODEL_CARD = "mlops/model_card"
    ENVIRONMENT = "mlops/environment"  # where a version was trained or decided (`default` outside one)
    IMPORTED_FROM = "mlops/imported_from"  # on an imported candidate: the URI it was read from

    # Training: what the candidate was trained on and how.
    HOLDOUT_CUTOFF = "mlops/holdout_cutoff"
    TRAINING_DATA_VERSION = "mlops/training_set_data_version"
    TRAIN_ROWS = "mlops/train_rows"
    HOLDOUT_ROWS = "mlops/holdout_rows"
    FEATURES = "mlops/features"
    ESTIMATOR = "mlops/estimator"
    TRIGGER = "mlops/trigger"
    DATASET_SCHEMA = "mlops/dataset_schema"
    DRIFT_COLUMNS = "mlops/drift_columns"
    CLASSES = "mlops/classes"  # classification: the label values the version was trained on
    DATASET_PROFILE = "mlops/dataset_profile"  # null shares, domains, ranges: the inferred checks' baseline

    # Datasets and feature groups: definition metadata, and the preview of a materialized frame.
    PIPELINE = "mlops/pipeline"
    SOURCE = "mlops/source"
    CONSUMERS = "mlops/consumers"
    PII = "mlops/pii"
    PREVIEW = "mlops/preview"

    # Quality checks: the guard's and the expectations' check results (shown by `quarantine show`).
    EXPECTATION = "mlops/expectation"
    PROBLEMS = "mlops/problems"
    SCHEMA = "mlops/schema"  # the champion's training schema the batch was checked against
    CHAMPION = "mlops/champion_version"  # also on the drift report
    PARTITION = "mlops/partition"
    FAILURE_KIND = "mlops/failure_kind"  # `data`, or `config` (the check could not run: fix the spec)
    NOTE = "mlops/note"  # why a built-in check passed without comparing (no champion yet, ...)

    # Drift report: the batch against the champion's training set.
    DRIFT_REPORT = "mlops/report"  # the HTML report
    DRIFT_TABLE = "mlops/columns"  # per-column drift table
    DRIFT_SHARE = "mlops/drift_share"
    DRIFTED_COLUMNS = "mlops/drifted_columns"
    DATASET_DRIFT = "mlops/dataset_drift"
    ROWS_REFERENCE = "mlops/rows_reference"
    ROWS_CURRENT = "mlops/rows_current"

    # Batch predictions (`<p>/predictions`) and live performance (`<p>/live_performance`), per partition.
    MODEL_VERSIONS = "mlops/model_versions"  # the versions that predicted (or served) in the partition
    METRIC_NAME = "mlops/metric"  # the scorer name of `monitoring.performance.metric`
    LIVE_METRIC = "mlops/live_metric"  # float: the metric on every labelled prediction of the partition
    HOLDOUT_METRIC = "mlops/holdout_metric"  # float: the champion's offline holdout score, for the plot
    SAMPLES = "mlops/samples"  # int: labelled predictions scored
    LABEL_COVERAGE = "mlops/label_coverage"  # float: share of the partition's predictions with a label
    LIVE_BY_VERSION = "mlops/live_by_version"  # table: version, metric, samples
    EVIDENCE = "mlops/evidence"  # bool: samples >= min_samples (else the partition is no evidence)
    UNMATCHED_LABELS = "mlops/unmatched_labels"  # int: feedback rows that matched no prediction

    # Packaging, the bento: what it serves and how it was built.
    BENTO_TAG = "mlops/bento_tag"
    RUNTIME = "mlops/runtime"
    RUNTIME_NOTE = "mlops/runtime_note"
    SERVED_MODEL = "mlops/served_model"
    WORKERS = "mlops/workers"
    BENTO_PATH = "mlops/bento_path"
    DOCKERFILE = "mlops/dockerfile"
    API_SCHEMA = "mlops/api_schema"
    CONTAINERIZED = "mlops/containerized"
    CONTAINERIZE_NOTE = "mlops/containerize_note"
    SIZE_BYTES = "mlops/size_bytes"  # also on the edge bundle

    # Packaging, the edge bundle.
    BUNDLE = "mlops/bundle"
    BENTO_MODEL = "mlops/bento_model"

    # Packaging, ONNX parity with the champion on its holdout (on the bento and the edge bundle).
    PARITY_ROWS = "mlops/rows"
    LABEL_AGREEMENT = "mlops/label_agreement"
    MAX_PROBA_DIFF = "mlops/max_proba_diff"
    MAX_REL_ERR = "mlops/max_rel_err"
    # On the champion decision: the parity-checked bundle in the BentoML store that packaging reuses.
    ONNX_MODEL = "mlops/onnx_model"


class PredictionColumns:
    """The columns of `<p>/predictions` beside the dataset's entity and timestamp (which keep their names).

    Classification adds one `proba_<class>` column per class the version knows, the class written as
    `quality.baseline.value_key` writes it (`proba_1`, `proba_True`, `proba_churn`).
    """

    PREDICTION = "prediction"
    PROBA_PREFIX = "proba_"
    MODEL_VERSION = "model_version"
    PARTITION = "partition"
    RESERVED = (PREDICTION, MODEL_VERSION, PARTITION)


class Tags:
    """Run tags written by the library (prefix `mlops/`): read by the sensors, the CLI and the UI.

    The string values are a public contract, as for `Meta`: never change one.
    """

    # Every run the library launches.
    TRIGGER = "mlops/trigger"  # what launched the run; readers take `manual` when it is absent
    PIPELINE = "mlops/pipeline"

    # Drift sensor: the retrain it requests.
    PARTITION = "mlops/partition"
    CHAMPION = "mlops/champion_version"
    DRIFT_SHARE = "mlops/drift_share"
    DRIFTED_COLUMNS = "mlops/drifted_columns"

    # Performance sensor: the rollback it requests (`mlops/trigger: performance`).
    BREACHED_PARTITIONS = "mlops/breached_partitions"
    ROLLED_BACK_FROM = "mlops/rolled_back_from"  # the champion version the rollback leaves

    # Quality sensor: the run it requests when a failing partition passes again.
    RECOVERED_PARTITION = "mlops/recovered_partition"

    # CLI: `registry promote | rollback`.
    ACTION = "mlops/action"
    REQUESTED_BY = "mlops/requested_by"  # the user who ran the command (recorded in the audit log)
    APPROVED_BY = "mlops/approved_by"  # `registry approve`: the owner who approved the promotion
    LEASE = "mlops/lease"  # the lease the process executing the run holds (registry/pool.py `run_lease`)

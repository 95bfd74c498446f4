"""Fit the spec's estimator on a time-ordered split and score it on the holdout.

sklearn is imported inside the functions: loading definitions must not pay for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops_dagster.errors import DataError
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.spec.resolve import resolve_object

DEFAULT_METRICS = {
    "classification": ["roc_auc", "accuracy", "f1", "neg_log_loss"],
    "regression": ["r2", "neg_root_mean_squared_error", "neg_mean_absolute_error"],
}


@dataclass
class TrainingResult:
    model: Any
    metrics: dict[str, float]
    features: list[str]
    cutoff: pd.Timestamp
    train_rows: int
    holdout_rows: int
    schema: dict[str, str] = field(default_factory=dict)


def split_holdout(
    df: pd.DataFrame, timestamp: str, fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Hold out the latest `fraction` of rows by event time; rows sharing the cutoff time go to the holdout.

    Raises:
        DataError: when either side would be empty.
    """
    ordered = df.sort_values(timestamp, kind="stable").reset_index(drop=True)
    if len(ordered) < 2:
        raise DataError(f"need at least 2 rows to split train/holdout, got {len(ordered)}")
    cutoff = pd.Timestamp(ordered[timestamp].iloc[min(len(ordered) - 1, int(len(ordered) * (1 - fraction)))])
    train = ordered[ordered[timestamp] < cutoff]
    holdout = ordered[ordered[timestamp] >= cutoff]
    if train.empty or holdout.empty:
        raise DataError(
            f"the time-ordered split at {cutoff} leaves an empty side (train {len(train)} rows, "
            f"holdout {len(holdout)}); more distinct timestamps are needed"
        )
    return train, holdout, cutoff


def holdout_for(df: pd.DataFrame, timestamp: str, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The rows at or after a recorded cutoff: the holdout a version was judged on."""
    return df[df[timestamp] >= cutoff]


def refuse_pii(spec: PipelineSpec, features: list[str]) -> None:
    """Fail before anything is fitted when a declared pii column is among the features.

    Raises:
        DataError: naming the columns and where pii is declared.
    """
    found = [c for c in features if c in spec.pii_columns]
    if found:
        raise DataError(
            f"{spec.name}: column(s) {found} are declared pii (dataset.pii or a feature group's pii) and "
            "cannot be model features; remove them from model.features (or the feature group's output)"
        )


def _days(timestamps: pd.Series | None) -> str:
    """` (partitions a, b)`: the event days of some rows, which are their daily partitions."""
    if timestamps is None:
        return ""
    days = sorted({pd.Timestamp(t).date().isoformat() for t in timestamps.dropna()})
    if not days:
        return ""
    more = f" and {len(days) - 5} more" if len(days) > 5 else ""
    return f" (partition{'s' if len(days) > 1 else ''} {', '.join(days[:5])}{more})"


def check_label(y: pd.Series, task: str, column: str, timestamps: pd.Series | None = None) -> None:
    """Raises DataError for labels no model can train on, naming the partitions (event days) at fault."""
    if y.isna().any():
        where = _days(timestamps[y.isna()] if timestamps is not None else None)
        raise DataError(f"label column {column!r} has {int(y.isna().sum())} null value(s){where}")
    if task == "classification" and y.nunique() < 2:
        raise DataError(
            f"label column {column!r} has a single class ({y.iloc[0]!r}); classification needs at least two"
        )
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise DataError(f"label column {column!r} is {y.dtype}, regression needs numbers")


def _pipeline(spec: PipelineSpec, X: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [
        c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])
    ]
    categorical = [c for c in X.columns if c not in numeric]
    steps = []
    if numeric:
        steps.append(("num", SimpleImputer(strategy="median"), numeric))
    if categorical:
        steps.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    estimator_cls = resolve_object(spec.model.estimator)
    return Pipeline([("prepare", ColumnTransformer(steps)), ("model", estimator_cls(**spec.model.params))])


def metric_names(spec: PipelineSpec) -> list[str]:
    names = [spec.model.metric, *spec.gates.min, *DEFAULT_METRICS[spec.model.task]]
    if spec.monitoring.performance:
        names.append(spec.monitoring.performance.metric)
    return list(dict.fromkeys(names))


def evaluate(model: Any, X: pd.DataFrame, y: pd.Series, names: list[str]) -> dict[str, float]:
    """Score with sklearn scorers (greater is better); a scorer that cannot apply is left out."""
    from sklearn.metrics import get_scorer

    scores: dict[str, float] = {}
    for name in names:
        try:
            value = float(get_scorer(name)(model, X, y))
        except (ValueError, AttributeError):
            continue
        if math.isfinite(value):
            scores[name] = value
    return scores


def prepare_frame(
    spec: PipelineSpec, df: pd.DataFrame, features: list[str]
) -> tuple[pd.DataFrame, pd.Series]:
    for col in features:
        if pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col]):
            df = df.assign(**{col: df[col].astype(object).where(df[col].notna(), None)})
    return df[features], df[spec.dataset.label]


def train_candidate(spec: PipelineSpec, training_set: pd.DataFrame, features: list[str]) -> TrainingResult:
    """Fit the spec's estimator on all but the latest `model.holdout` of rows and score the rest.

    Raises:
        DataError: single-class label, nulls in the label, too few rows for a split.
    """
    label, ts = spec.dataset.label, spec.dataset.timestamp
    if label in features:
        raise DataError(f"label {label!r} is among the model features {features}")
    refuse_pii(spec, features)
    check_label(training_set[label], spec.model.task, label, training_set[ts])
    train, holdout, cutoff = split_holdout(training_set, ts, spec.model.holdout)
    check_label(train[label], spec.model.task, label, train[ts])
    X_train, y_train = prepare_frame(spec, train, features)
    X_hold, y_hold = prepare_frame(spec, holdout, features)
    model = _pipeline(spec, X_train)
    model.fit(X_train, y_train)
    metrics = evaluate(model, X_hold, y_hold, metric_names(spec))
    if spec.model.metric not in metrics:
        raise DataError(
            f"metric {spec.model.metric!r} cannot be computed on the holdout ({len(holdout)} rows): "
            f"label column {label!r} has values {sorted(map(str, y_hold.unique()))[:5]} there"
        )
    return TrainingResult(
        model=model,
        metrics=metrics,
        features=features,
        cutoff=cutoff,
        train_rows=len(train),
        holdout_rows=len(holdout),
        schema={c: str(X_train[c].dtype) for c in features},
    )

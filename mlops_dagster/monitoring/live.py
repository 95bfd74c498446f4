"""Live performance: a partition's batch predictions joined with its late labels, scored per version.

The join is an inner join by entity and event time (timestamps compared in UTC), one label per
prediction. The metric is sklearn's own scorer (`sklearn.metrics.get_scorer`), given the stored
predictions through a small replay estimator: its `predict` and `predict_proba` return the stored
`prediction` and `proba_<class>` columns of the rows it is given, and its `classes_` are the classes of
those columns, typed like the predictions and sorted as sklearn sorts a model's classes. So the scorer
picks the response it needs (labels or probabilities, the positive class) exactly as it does when the
champion is scored on its holdout, and nothing private of sklearn is used.

A metric that cannot be computed (no labelled prediction, a single class among the labels, ...) is
None with a note saying why: the partition is no evidence either way, never a crash.
sklearn is imported inside the functions that score.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_dagster.errors import DataError
from mlops_dagster.keys import PredictionColumns
from mlops_dagster.quality.baseline import value_key

C = PredictionColumns
OBSERVED = "observed_label"  # the feedback's label, in the joined frame
_SCORING_ERRORS = (ValueError, TypeError, AttributeError, IndexError)


@dataclass(frozen=True)
class JoinKeys:
    """The predictions' entity and timestamp columns (the dataset's names), and the feedback's columns."""

    entity: str
    timestamp: str
    label_entity: str
    label_timestamp: str
    label: str


@dataclass(frozen=True)
class Score:
    """The metric of one model version (or of all, `version` None) on its labelled predictions."""

    version: str | None
    metric: float | None
    samples: int
    note: str | None = None


@dataclass(frozen=True)
class LivePerformance:
    """A partition's live performance.

    Attributes:
        metric: The scorer name.
        overall: The metric on every labelled prediction of the partition.
        by_version: One score per version that predicted in the partition, in order of appearance.
        predictions: Predictions in the partition.
        unmatched_labels: Feedback rows that matched no prediction.
    """

    metric: str
    overall: Score
    by_version: list[Score]
    predictions: int
    unmatched_labels: int

    @property
    def samples(self) -> int:
        return self.overall.samples

    @property
    def coverage(self) -> float:
        """The share of the partition's predictions that got a label (0.0 without predictions)."""
        return self.samples / self.predictions if self.predictions else 0.0

    @property
    def versions(self) -> list[str]:
        return [s.version for s in self.by_version if s.version is not None]

    def notes(self) -> list[str]:
        scores = [self.overall, *self.by_version]
        lines = [f"{s.version or 'all versions'}: {s.note}" for s in scores if s.note]
        if self.unmatched_labels:
            lines.append(f"{self.unmatched_labels} label(s) matched no prediction (entity + timestamp)")
        return lines


def _utc(series: pd.Series) -> pd.Series:
    """Event times as naive UTC nanoseconds, so that the two sides compare whatever their source."""
    times = pd.to_datetime(series)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[ns]")


def join_labels(
    predictions: pd.DataFrame, feedback: pd.DataFrame, keys: JoinKeys
) -> tuple[pd.DataFrame, int]:
    """The predictions that got a label, with it as `OBSERVED`; and how many labels matched none.

    Raises:
        DataError: the entity columns cannot be compared, or a prediction or a label is repeated.
    """
    labels = feedback[[keys.label_entity, keys.label_timestamp, keys.label]].rename(
        columns={keys.label_entity: keys.entity, keys.label_timestamp: keys.timestamp, keys.label: OBSERVED}
    )
    labels = labels.dropna(subset=[OBSERVED]).assign(**{keys.timestamp: lambda f: _utc(f[keys.timestamp])})
    left = predictions.assign(**{keys.timestamp: _utc(predictions[keys.timestamp])})
    try:
        joined = left.merge(labels, on=[keys.entity, keys.timestamp], how="inner", validate="one_to_one")
    except ValueError as e:  # pandas' MergeError is a ValueError too
        raise DataError(
            f"cannot join the predictions ({keys.entity} {left[keys.entity].dtype}) with the feedback "
            f"({keys.label_entity} {labels[keys.entity].dtype}) by entity and timestamp: {e}"
        ) from e
    return joined, len(labels) - len(joined)


def _class_value(text: str, dtype: Any, seen: dict[str, Any]) -> Any:
    """The class a `proba_<text>` column stands for, typed like the `prediction` column."""
    if text in seen:
        return seen[text]
    try:
        if pd.api.types.is_bool_dtype(dtype):
            return text == "True"
        if pd.api.types.is_integer_dtype(dtype):
            return int(text)
        if pd.api.types.is_float_dtype(dtype):
            return float(text)
    except ValueError:
        pass
    return text


def replay_classes(frame: pd.DataFrame) -> tuple[list[Any], list[str]]:
    """(classes, their proba columns), sorted by class as sklearn orders a model's `classes_`.

    A column with no value in `frame` (a class the versions in it never knew) is left out.
    """
    prefix, dtype = C.PROBA_PREFIX, frame[C.PREDICTION].dtype
    columns = [str(c) for c in frame.columns if str(c).startswith(prefix) and frame[c].notna().any()]
    seen = {value_key(v): v for v in pd.unique(frame[C.PREDICTION].dropna())}
    typed = [(_class_value(c.removeprefix(prefix), dtype, seen), c) for c in columns]
    try:
        typed.sort(key=lambda pair: pair[0])
    except TypeError:  # classes of mixed types: sklearn would refuse them too; keep a stable order
        typed.sort(key=lambda pair: str(pair[0]))
    return [cls for cls, _ in typed], [col for _, col in typed]


@functools.cache
def _replay_types() -> tuple[type, type]:
    """The replay estimators (defined on first use: sklearn is imported only when scoring)."""
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.metaestimators import available_if

    class ReplayClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        """Stored classifications: `predict` and `predict_proba` return the stored columns of `X`."""

        def __init__(self, classes: Sequence[Any] = (), proba_columns: Sequence[str] = ()) -> None:
            self.classes = classes
            self.proba_columns = proba_columns

        @property
        def classes_(self) -> np.ndarray:
            return np.asarray(list(self.classes))

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return X[C.PREDICTION].to_numpy()

        @available_if(lambda self: bool(self.proba_columns))
        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            # A class a version never knew has no column value for its rows: it gave it no probability.
            return X[list(self.proba_columns)].fillna(0.0).to_numpy(dtype=float)

    class ReplayRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
        """Stored regressions: `predict` returns the stored `prediction` column of `X`."""

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return X[C.PREDICTION].to_numpy(dtype=float)

    return ReplayClassifier, ReplayRegressor


def replay_estimator(frame: pd.DataFrame, task: str) -> Any:
    """An estimator that replays the stored predictions of `frame`'s rows to an sklearn scorer."""
    classifier, regressor = _replay_types()
    if task != "classification":
        return regressor()
    classes, columns = replay_classes(frame)
    return classifier(classes=classes, proba_columns=columns)


def score(frame: pd.DataFrame, metric: str, task: str, version: str | None = None) -> Score:
    """The scorer `metric` on the labelled predictions `frame` (from `join_labels`)."""
    from sklearn.metrics import get_scorer

    samples = len(frame)
    if not samples:
        return Score(version, None, 0, "no labelled prediction")
    estimator = replay_estimator(frame, task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(get_scorer(metric)(estimator, frame, frame[OBSERVED]))
        except _SCORING_ERRORS as e:
            return Score(version, None, samples, f"{metric} cannot be computed on {samples} label(s): {e}")
    if not math.isfinite(value):
        why = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or f"the score is {value}"
        return Score(version, None, samples, f"{metric} is undefined on {samples} label(s): {why}")
    return Score(version, value, samples)


def live_performance(
    predictions: pd.DataFrame, feedback: pd.DataFrame, keys: JoinKeys, metric: str, task: str
) -> LivePerformance:
    """Join a partition's predictions with its feedback and score `metric`, overall and per version.

    Raises:
        DataError: the two cannot be joined (see `join_labels`).
    """
    joined, unmatched = join_labels(predictions, feedback, keys)
    versions = [str(v) for v in pd.unique(predictions[C.MODEL_VERSION].dropna())]
    by_version = [score(joined[joined[C.MODEL_VERSION] == v], metric, task, v) for v in versions]
    return LivePerformance(
        metric=metric,
        overall=score(joined, metric, task),
        by_version=by_version,
        predictions=len(predictions),
        unmatched_labels=unmatched,
    )

"""`<p>/live_performance`: predictions joined with late labels, scored with sklearn's own scorers.

The live metric is exactly sklearn's score on the joined rows; per-version scores, sample count,
label coverage, evidence and the champion's holdout score are numeric metadata; a metric that cannot
be computed is recorded as no evidence, with a note; late labels re-score their partition (automation
condition); a pii entity joins hashed and no raw value reaches the stored files. The replay estimator
is checked against real estimators for several metrics and label types.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_dagster import ParquetIOManager
from mlops_dagster.keys import Meta, feedback_key, live_performance_key, predictions_key
from mlops_dagster.monitoring.live import OBSERVED, JoinKeys, live_performance, score
from mlops_dagster.quality.pii import hash_value
from mlops_dagster.registry import records
from tests.governance.live_pipeline import Live, labels_for, spec_text, with_email
from tests.quality.small_pipeline import good_frame, module_env
from tests.run_output import failure_text

NAME, PII = "live", "live_pii"
DAY = "2026-01-04"
KEYS = JoinKeys("customer_id", "event_time", "cust", "ts", "outcome")


def _email_frame(day: str) -> pd.DataFrame:
    return with_email(good_frame(day))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    specs = {NAME: spec_text(NAME), PII: spec_text(PII, entity="email", pii="[email]")}
    with module_env(tmp_path_factory.mktemp("live"), specs) as env:
        live = Live(env)
        live.first_days(NAME)
        live.first_days(PII, frame=_email_frame)
        yield live


def _day(live: Live, name: str, day: str, labels: pd.DataFrame, batch: pd.DataFrame | None = None) -> None:
    """A dataset day, its predictions, its labels, and its live performance."""
    live.land(name, day, good_frame(day) if batch is None else batch)
    for key in (predictions_key(name), feedback_key(name), live_performance_key(name)):
        if key == feedback_key(name):
            live.land_labels(name, day, labels)
        result = live.run([key], day)
        assert result.success, failure_text(result)


def test_the_live_metric_is_sklearns_score_on_the_joined_rows(live: Live) -> None:
    from sklearn.metrics import roc_auc_score

    batch = good_frame(DAY)
    strangers = labels_for(good_frame("2026-01-20").head(3)).assign(ts=pd.Timestamp(DAY))
    _day(live, NAME, DAY, pd.concat([labels_for(batch, share=0.8), strangers]))

    predictions, feedback = live.predictions(NAME, DAY), live.feedback(NAME, DAY)
    joined = predictions.merge(feedback, left_on=["customer_id", "event_time"], right_on=["cust", "ts"])
    expected = roc_auc_score(joined["outcome"], joined["proba_1"])
    champion = records.current_champion(live.instance, NAME)
    assert champion is not None

    md = live.latest(live_performance_key(NAME), DAY)
    assert md[Meta.LIVE_METRIC] == pytest.approx(expected, abs=1e-12)
    assert md[Meta.SAMPLES] == len(joined) == 48
    assert md[Meta.LABEL_COVERAGE] == pytest.approx(0.8)
    assert md[Meta.UNMATCHED_LABELS] == 3
    assert md[Meta.EVIDENCE] is True  # 48 labels, min_samples 30
    assert md[Meta.HOLDOUT_METRIC] == pytest.approx(champion.metrics["roc_auc"])
    assert md[Meta.METRIC_NAME] == "roc_auc"
    assert md[Meta.MODEL_VERSIONS] == [champion.version]
    (row,) = md[Meta.LIVE_BY_VERSION].records  # type: ignore[attr-defined]
    assert row.data == {"version": champion.version, "metric": pytest.approx(expected), "samples": 48}
    stored = live.stored(live_performance_key(NAME), DAY)
    assert stored.to_dict("records") == [
        {"version": champion.version, "metric": md[Meta.LIVE_METRIC], "samples": 48}
    ]


def test_too_few_labels_are_no_evidence(live: Live) -> None:
    day = "2026-01-05"
    _day(live, NAME, day, labels_for(good_frame(day), share=0.25))
    md = live.latest(live_performance_key(NAME), day)
    assert md[Meta.SAMPLES] == 15 and isinstance(md[Meta.LIVE_METRIC], float)
    assert md[Meta.EVIDENCE] is False
    assert "15 label(s), fewer than the 30 needed: no evidence" in str(md[Meta.NOTE])


def test_a_metric_that_cannot_be_computed_is_recorded_not_raised(live: Live) -> None:
    day = "2026-01-06"
    batch = good_frame(day)
    _day(live, NAME, day, labels_for(batch[batch["churned"] == 1]))
    md = live.latest(live_performance_key(NAME), day)
    assert Meta.LIVE_METRIC not in md and md[Meta.EVIDENCE] is False and md[Meta.SAMPLES] == 30
    assert "roc_auc is undefined on 30 label(s): Only one class is present in y_true" in str(md[Meta.NOTE])
    (row,) = md[Meta.LIVE_BY_VERSION].records  # type: ignore[attr-defined]
    assert row.data["metric"] is None and row.data["samples"] == 30


def test_late_labels_rescore_their_partition(live: Live) -> None:
    day = "2026-01-07"
    batch = good_frame(day)
    _day(live, NAME, day, labels_for(batch, share=0.5))
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance)
    live.land_labels(NAME, day, labels_for(batch))  # the rest of the labels arrive
    assert live.run([feedback_key(NAME)], day).success
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance, cursor=tick.cursor)
    assert tick.get_requested_partitions(live_performance_key(NAME)) == {day}
    assert tick.get_num_requested(predictions_key(NAME)) == 0
    assert live.run([live_performance_key(NAME)], day).success
    assert live.latest(live_performance_key(NAME), day)[Meta.SAMPLES] == 60


def test_a_pii_entity_joins_hashed_and_never_reaches_the_files(live: Live) -> None:
    batch = _email_frame(DAY)
    labels = labels_for(batch, entity="email", share=0.8)
    _day(live, PII, DAY, labels, batch=batch)
    bad = labels_for(_email_frame("2026-01-08"), entity="email").assign(outcome=7)
    live.land_labels(PII, "2026-01-08", bad)
    assert not live.run([feedback_key(PII)], "2026-01-08").success  # quarantined, hashed

    predictions, feedback = live.predictions(PII, DAY), live.feedback(PII, DAY)
    assert set(predictions["email"]) == {hash_value(e) for e in batch["email"]}
    assert set(feedback["cust"]) == {hash_value(e) for e in labels["cust"]}
    assert live.latest(live_performance_key(PII), DAY)[Meta.SAMPLES] == 48
    root = Path(str(ParquetIOManager().root()))
    files = [p for p in root.rglob("*") if p.is_file() and PII in p.parts]
    assert any("quarantine" in str(p) and p.name == "data.parquet" for p in files)
    assert {p.parent.name for p in files} >= {"predictions", "feedback"}
    leaked = [p for p in files if b"@example.com" in p.read_bytes()]
    assert leaked == []


# --- the replay estimator against real estimators ---------------------------------------------------


def _stored(model, X: pd.DataFrame, y: pd.Series, version: str = "v1") -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The joined frame `<p>/predictions` and `<p>/feedback` give for these rows."""
    from mlops_dagster.factory.predictions import proba_column

    frame = pd.DataFrame({"prediction": model.predict(X), "model_version": version, OBSERVED: y.to_numpy()})
    if hasattr(model, "predict_proba"):
        for i, cls in enumerate(model.classes_):
            frame[proba_column(cls)] = model.predict_proba(X)[:, i]
    return frame


def _expected(metric: str, model, X: pd.DataFrame, y: pd.Series) -> float | None:  # type: ignore[no-untyped-def]
    from sklearn.metrics import get_scorer

    try:
        value = float(get_scorer(metric)(model, X, y))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _data(labels: list[object], seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    which = np.digitize(X["a"] + 0.5 * rng.normal(size=120), np.linspace(-1, 1, len(labels) + 1)[1:-1])
    return X, pd.Series(np.asarray(labels, dtype=object)[which]).astype(type(labels[0]))


CLASSIFICATION_METRICS = ["accuracy", "balanced_accuracy", "roc_auc", "roc_auc_ovr", "f1", "neg_log_loss"]


@pytest.mark.parametrize("metric", CLASSIFICATION_METRICS)
@pytest.mark.parametrize(
    "labels",
    [[0, 1], [False, True], ["no", "yes"], [2, 10], [0, 1, 2]],
    ids=["int", "bool", "text", "2-10", "multiclass"],
)
def test_replayed_classifications_score_as_the_model_does(metric: str, labels: list[object]) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _data(labels)
    model = LogisticRegression().fit(X, y)
    expected = _expected(metric, model, X, y)
    got = score(_stored(model, X, y), metric, "classification")
    if expected is None:  # sklearn refuses it on the model too (f1 of text or multiclass labels)
        assert got.metric is None and got.note
    else:
        assert got.metric == pytest.approx(expected, abs=1e-12) and got.samples == len(X)


@pytest.mark.parametrize("metric", ["r2", "neg_mean_absolute_error", "neg_root_mean_squared_error"])
def test_replayed_regressions_score_as_the_model_does(metric: str) -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=80)})
    y = pd.Series(3 * X["a"] + rng.normal(size=80))
    model = Ridge().fit(X, y)
    got = score(_stored(model, X, y), metric, "regression")
    assert got.metric == pytest.approx(_expected(metric, model, X, y), abs=1e-12)


def test_each_version_is_scored_on_its_own_rows() -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _data([0, 1])
    old, new = LogisticRegression(C=0.001).fit(X, y), LogisticRegression().fit(X, y)
    halves = [slice(0, 60), slice(60, 120)]
    frames = [
        _stored(m, X.iloc[h], y.iloc[h], v)
        for m, h, v in zip((old, new), halves, ("old", "new"), strict=True)
    ]
    frame = pd.concat(frames, ignore_index=True)
    predictions = frame.drop(columns=OBSERVED).assign(customer_id=range(120), event_time=pd.Timestamp(DAY))
    feedback = predictions[["customer_id", "event_time"]].rename(
        columns={"customer_id": "cust", "event_time": "ts"}
    )
    feedback = feedback.assign(outcome=frame[OBSERVED]).iloc[10:]  # 10 of the old version's rows unlabelled
    result = live_performance(predictions, feedback, KEYS, "roc_auc", "classification")
    assert result.versions == ["old", "new"] and result.coverage == pytest.approx(110 / 120)
    old_score, new_score = result.by_version
    assert old_score.samples == 50 and new_score.samples == 60
    assert old_score.metric == pytest.approx(
        _expected("roc_auc", old, X.iloc[10:60], y.iloc[10:60]), abs=1e-12
    )
    assert new_score.metric == pytest.approx(_expected("roc_auc", new, X.iloc[60:], y.iloc[60:]), abs=1e-12)
    from sklearn.metrics import roc_auc_score

    labelled = frame.iloc[10:]
    assert result.overall.metric == pytest.approx(roc_auc_score(labelled[OBSERVED], labelled["proba_1"]))


def test_no_labelled_prediction_is_a_note() -> None:
    predictions = pd.DataFrame(
        {"customer_id": [1], "event_time": [pd.Timestamp(DAY)], "prediction": [1], "proba_0": [0.2]}
    ).assign(proba_1=0.8, model_version="v1")
    feedback = pd.DataFrame({"cust": [2], "ts": [pd.Timestamp(DAY)], "outcome": [1]})
    result = live_performance(predictions, feedback, KEYS, "roc_auc", "classification")
    assert result.overall.metric is None and result.samples == 0 and result.unmatched_labels == 1
    assert result.notes() == [
        "all versions: no labelled prediction",
        "v1: no labelled prediction",
        "1 label(s) matched no prediction (entity + timestamp)",
    ]

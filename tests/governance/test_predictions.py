"""`<p>/predictions` (`serving.targets: [batch]`): the champion's predictions per dataset partition.

The predictions are the champion's on the features it was trained with (its feature group joined as
of each row's event time, as the training set joins it); each partition keeps the version that
predicted it; new dataset partitions are predicted by the automation condition, and neither a new
champion nor a refreshed feature group requests an earlier partition again. Before any champion, a
partition is skipped with a note.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_dagster.errors import DataError
from mlops_dagster.factory.predictions import prediction_frame
from mlops_dagster.keys import (
    Meta,
    candidate_key,
    champion_key,
    dataset_key,
    feature_key,
    predictions_key,
    training_set_key,
)
from mlops_dagster.registry import records
from mlops_dagster.spec.models import PipelineSpec
from tests.governance.live_pipeline import TRANSFORMS, Live, groups_text, spec_text
from tests.quality.small_pipeline import good_frame, module_env
from tests.run_output import failure_text

NAME, UNSERVED = "preds", "preds_unserved"
COLUMNS = ["customer_id", "event_time", "prediction", "proba_0", "proba_1", "model_version", "partition"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    specs = {
        NAME: spec_text(NAME, feedback=False, groups=True),
        f"{NAME}_groups": groups_text(NAME),
        UNSERVED: spec_text(UNSERVED, feedback=False),
    }
    with module_env(tmp_path_factory.mktemp("predictions"), specs) as env:
        (env.root / "governance_transforms.py").write_text(TRANSFORMS)
        sys.path.insert(0, str(env.root))
        try:
            live = Live(env)
            live.first_days(NAME, groups=True)
            yield live
        finally:
            sys.path.remove(str(env.root))
            sys.modules.pop("governance_transforms", None)


def test_without_a_champion_a_partition_is_skipped_with_a_note(live: Live) -> None:
    day = "2026-01-05"
    live.land(UNSERVED, day, good_frame(day))
    result = live.run([predictions_key(UNSERVED)], day)
    assert result.success, failure_text(result)
    assert result.get_asset_materialization_events() == []
    (observation,) = result.get_asset_observation_events()
    note = observation.asset_observation_data.asset_observation.metadata[Meta.NOTE].value
    assert note == (
        f"{UNSERVED} has no champion yet: nothing predicted for partition {day}; "
        "materialize it again once a version is promoted"
    )


def test_predictions_are_the_champions_on_its_training_features(live: Live) -> None:
    """A day the champion was trained on: its predictions there are the champion's on the training set
    rows of that day, feature group included (so the join is the training join)."""
    from mlops_dagster.registry.store import load_version
    from mlops_dagster.training.train import prepare_frame

    day = "2026-01-02"
    result = live.run([predictions_key(NAME)], day)
    assert result.success, failure_text(result)
    stored = live.predictions(NAME, day)
    champion = records.current_champion(live.instance, NAME)
    assert champion is not None
    assert list(stored.columns) == COLUMNS
    assert len(stored) == len(good_frame(day))
    assert set(stored["model_version"]) == {champion.version} and set(stored["partition"]) == {day}

    candidate = records.candidate_metadata(live.instance, NAME, champion.version) or {}
    features = candidate[Meta.FEATURES]
    assert "charges_per_month_of_tenure" in features  # the feature group's column
    training = _training_set()
    rows = training[training["event_time"].dt.strftime("%Y-%m-%d") == day]
    model = load_version(NAME, champion.version, champion.sha256)
    X, _ = prepare_frame(_spec(live), rows, features)
    expected = rows[["customer_id", "event_time"]].assign(expected=model.predict_proba(X)[:, 1])
    joined = stored.merge(expected, on=["customer_id", "event_time"], validate="one_to_one")
    assert len(joined) == len(stored)
    np.testing.assert_allclose(joined["proba_1"], joined["expected"], rtol=0, atol=1e-12)
    assert (joined["prediction"] == (joined["proba_1"] > 0.5).astype(int)).all()

    metadata = live.latest(predictions_key(NAME), day)
    assert metadata[Meta.CHAMPION] == champion.version
    assert metadata[Meta.MODEL_VERSIONS] == [champion.version]
    assert metadata["dagster/row_count"] == len(stored)


def _training_set() -> pd.DataFrame:
    from mlops_dagster import ParquetIOManager

    return pd.read_parquet(ParquetIOManager().path_for(training_set_key(NAME), None))


def _spec(live: Live) -> PipelineSpec:
    from mlops_dagster.spec import load_specs

    return next(s for s in load_specs(live.env.root) if s.name == NAME)


def test_new_partitions_are_predicted_and_a_new_champion_restales_none(live: Live) -> None:
    graph = live.defs.resolve_asset_graph()
    assert graph.get(predictions_key(NAME)).parent_keys == {
        dataset_key(NAME),
        feature_key(f"{NAME}_ratio"),
    }  # the champion is read from the registry, not an upstream asset
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance)

    day = "2026-01-06"
    live.land(NAME, day, good_frame(day))
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance, cursor=tick.cursor)
    assert tick.get_requested_partitions(predictions_key(NAME)) == {day}
    assert live.run([predictions_key(NAME)], day).success
    first = records.current_champion(live.instance, NAME)
    assert first is not None
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance, cursor=tick.cursor)
    assert tick.total_requested == 0

    # Another day lands, the feature group is refreshed, a new version is promoted: only the new
    # day is requested, and the day predicted before keeps the version that predicted it.
    later = "2026-01-07"
    live.land(NAME, later, good_frame(later))
    trained = live.run([feature_key(f"{NAME}_ratio"), training_set_key(NAME), candidate_key(NAME)])
    assert trained.success, failure_text(trained)
    new = records.latest_candidate(live.instance, NAME)
    assert new is not None and new.version != first.version
    promoted = dg.materialize(
        list(live.defs.assets),
        selection=[champion_key(NAME)],
        instance=live.instance,
        resources=live.defs.resources,
        run_config={"ops": {f"{NAME}__champion": {"config": {"action": "promote", "version": new.version}}}},
    )
    assert promoted.success, failure_text(promoted)
    tick = dg.evaluate_automation_conditions(defs=live.defs, instance=live.instance, cursor=tick.cursor)
    assert tick.get_requested_partitions(predictions_key(NAME)) == {later}
    assert set(live.predictions(NAME, day)["model_version"]) == {first.version}
    assert live.run([predictions_key(NAME)], later).success
    assert set(live.predictions(NAME, later)["model_version"]) == {new.version}


def _spec_for(task: str) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "unit",
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
            "model": {
                "task": task,
                "estimator": "sklearn.linear_model.LogisticRegression",
                "metric": "accuracy",
            },
            "serving": {"targets": ["batch"]},
        }
    )


@pytest.mark.parametrize(
    ("labels", "columns"),
    [
        (["no", "yes"], ["proba_no", "proba_yes"]),
        ([False, True], ["proba_False", "proba_True"]),
        ([2.0, 10.0], ["proba_2", "proba_10"]),
    ],
)
def test_one_probability_column_per_class(labels: list[object], columns: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"id": range(40), "ts": pd.Timestamp("2026-01-01"), "x": rng.normal(size=40)})
    rows["y"] = np.where(rows["x"] > 0, labels[1], labels[0])
    model = LogisticRegression().fit(rows[["x"]], rows["y"])
    out = prediction_frame(_spec_for("classification"), model, rows, ["x"], "v1", "2026-01-01")
    assert list(out.columns) == ["id", "ts", "prediction", *columns, "model_version", "partition"]
    np.testing.assert_allclose(out[columns].to_numpy(), model.predict_proba(rows[["x"]]))
    assert list(out["prediction"]) == list(model.predict(rows[["x"]]))


def test_a_feature_the_champion_needs_but_the_data_lacks_is_named() -> None:
    rows = pd.DataFrame({"id": [1], "ts": [pd.Timestamp("2026-01-01")], "y": [0], "x": [1.0]})
    with pytest.raises(DataError, match=r"champion v1 was trained on feature\(s\) \['gone'\]"):
        prediction_frame(_spec_for("classification"), object(), rows, ["x", "gone"], "v1", "2026-01-01")

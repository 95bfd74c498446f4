"""An expectation that cannot run (a column no batch has, an argument GX rejects at run time) is a
configuration error of the run: the run fails naming the spec file, line and field; the good batch is
not quarantined; and the quality sensor's alert says the spec, not the data, failed. Alerts for checks
that do not hold batches (the edge bundle's onnx_parity) do not claim anything was quarantined."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_dagster.keys import dataset_key
from mlops_dagster.sensors import quality
from mlops_dagster.spec.models import PipelineSpec
from tests.quality.small_pipeline import Env, evaluations, good_frame, module_env, spec_text
from tests.quality.test_label_checks import Recording
from tests.run_output import failure_text

BAD_SPEC = "config_errors"
QUALITY = """  expectations:
    - {type: expect_column_values_to_not_be_null, column: customer_id}
    - {type: expect_column_values_to_not_be_null, column: no_such_column}
    - {type: expect_column_values_to_match_regex, column: plan, regex: "("}"""
DAY = "2026-01-02"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("config_errors")
    specs = {BAD_SPEC: spec_text(BAD_SPEC, f'{{uri: "{BAD_SPEC}/{{partition}}.parquet"}}', quality=QUALITY)}
    with module_env(base, specs) as env:
        yield env


def test_an_expectation_that_cannot_run_fails_the_run_but_quarantines_nothing(env: Env) -> None:
    env.land(BAD_SPEC, DAY, good_frame(DAY))
    result = env.load(BAD_SPEC, DAY)
    assert not result.success
    text = failure_text(result)
    spec_file = env.root / f"{BAD_SPEC}.yaml"
    assert (
        f"{spec_file}:12 quality.expectations[1]: expect_column_values_to_not_be_null__no_such_column" in text
    )
    assert f"{spec_file}:13 quality.expectations[2]: expect_column_values_to_match_regex__plan" in text
    checks = evaluations(result)
    assert checks["expect_column_values_to_not_be_null__customer_id"].passed
    missing = checks["expect_column_values_to_not_be_null__no_such_column"]
    assert not missing.passed and missing.description.startswith(
        "configuration error (the spec, not the data)"
    )
    assert env.quarantine.get(dataset_key(BAD_SPEC), DAY) is None  # the good batch is not held
    assert DAY not in env.materialized(BAD_SPEC)  # nor stored: its checks did not all run

    Recording.sent = []
    sensor = env.defs.resolve_sensor_def(f"{BAD_SPEC}__quality_sensor")
    sensor(dg.build_sensor_context(instance=env.instance, resources={"mlops_notifier": Recording()}))
    (alert,) = Recording.sent
    assert alert.severity == "warning"
    assert alert.title == f"{BAD_SPEC}/dataset {DAY}: 2 quality check(s) could not run (configuration error)"
    assert "not quarantined" in alert.text and "The batch is quarantined" not in alert.text
    assert sorted(alert.details["configuration_errors"]) == [
        "expect_column_values_to_match_regex__plan",
        "expect_column_values_to_not_be_null__no_such_column",
    ]


def _spec() -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "p",
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
            "model": {"task": "regression", "estimator": "sklearn.linear_model.Ridge", "metric": "r2"},
        }
    )


def test_alerts_say_what_failed() -> None:
    spec = _spec()
    parity = quality.Evaluation(1, "r", "onnx_parity", "p/edge_bundle", "__all__", False, "labels differ")
    alert = quality.failure_alert(spec, "p/edge_bundle", "__all__", [parity])
    assert alert.title == "p/edge_bundle: 1 blocking check(s) failed"
    assert "not on a data batch: no data is quarantined" in alert.text
    assert "The batch is quarantined" not in alert.text and alert.severity == "error"

    data = quality.Evaluation(2, "r", "mlops_label", "p/dataset", "2026-01-01", False, "nulls")
    alert = quality.failure_alert(spec, "p/dataset", "2026-01-01", [data])
    assert alert.text.endswith("The batch is quarantined; nothing trains on it.")
    group = quality.failure_alert(spec, "features/g", "__all__", [data])
    assert "quarantined; nothing trains" in group.text

"""The built-in label check (`mlops_label`), and unreadable batches from a python source.

A batch with null labels or a label value the champion never saw is refused at the dataset, naming
the partition, and quarantined, so it can never block later retrains; `quality.allow_new_classes`
accepts new classes. A python source that cannot read its batch (0-byte or garbage Parquet) or returns
no DataFrame is quarantined and fails the schema guard, which the quality sensor alerts on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import dagster as dg
import pandas as pd
import pytest

from mlops_dagster import Notifier
from mlops_dagster.errors import DataError
from mlops_dagster.keys import dataset_key
from mlops_dagster.quality.baseline import Baseline
from mlops_dagster.quality.builtin_checks import LABEL_CHECK_NAME, label_outcome
from mlops_dagster.training.train import check_label
from tests.quality.small_pipeline import GOOD_DAYS, Env, evaluations, good_frame, module_env, spec_text
from tests.run_output import failure_text

URI, NEW_OK, PY = "labels_uri", "labels_new_ok", "labels_py"


class Recording(Notifier):
    """Keeps the alerts it is given."""

    sent: ClassVar[list[Any]] = []

    def send(self, alert, log=None, deadline=None):  # type: ignore[no-untyped-def, override]
        type(self).sent.append(alert)
        return True


# The python source reads `<spec folder>/labels_py/<partition>.parquet` itself, or returns a non-frame
# for the partition named in RETURNS_NONE.
SOURCE_MODULE = """
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
RETURNS_NONE = "2026-01-20"
BUGGY = "2026-01-21"


def load(context):
    if context.partition_key == RETURNS_NONE:
        return None
    if context.partition_key == BUGGY:
        return undefined_name  # noqa: F821
    return pd.read_parquet(HERE / "labels_py" / f"{context.partition_key}.parquet")
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("label_checks")
    specs = {
        URI: spec_text(URI, f'{{uri: "{URI}/{{partition}}.parquet"}}'),
        NEW_OK: spec_text(
            NEW_OK, f'{{uri: "{NEW_OK}/{{partition}}.parquet"}}', quality="  allow_new_classes: true"
        ),
        PY: spec_text(PY, "{python: labels_source:load}"),
    }
    with module_env(base, specs) as env:
        (env.root / "labels_source.py").write_text(SOURCE_MODULE)
        import sys

        sys.path.insert(0, str(env.root))
        try:
            for pipeline in (URI, NEW_OK):
                for day in GOOD_DAYS:
                    env.land(pipeline, day, good_frame(day))
                    result = env.load(pipeline, day)
                    assert result.success, failure_text(result)
                result = env.train(pipeline)
                assert result.success, failure_text(result)
                assert env.champion(pipeline) is not None
            yield env
        finally:
            sys.path.remove(str(env.root))
            sys.modules.pop("labels_source", None)


def test_null_labels_are_refused_naming_the_partition(env: Env) -> None:
    day = "2026-01-10"
    batch = good_frame(day)
    batch["churned"] = batch["churned"].astype(float).where(batch.index % 4 != 0)
    env.land(URI, day, batch)
    result = env.load(URI, day)
    assert not result.success
    label = evaluations(result)[LABEL_CHECK_NAME]
    assert not label.passed
    assert f"partition {day}: label `churned`: 15 null value(s) of 60" in label.description
    assert day not in env.materialized(URI)
    held = env.quarantine.get(dataset_key(URI), day)
    assert held is not None and LABEL_CHECK_NAME in held.report["failed_checks"]


def test_a_label_outside_the_champions_classes_is_refused(env: Env) -> None:
    day = "2026-01-11"
    batch = good_frame(day)
    batch.loc[:2, "churned"] = 7
    env.land(URI, day, batch)
    result = env.load(URI, day)
    assert not result.success
    text = failure_text(result)
    expected = f"partition {day}: label `churned`: 3 value(s) outside the champion's classes [0, 1]: 7 (3)"
    assert expected in text
    assert day not in env.materialized(URI)
    assert env.quarantine.get(dataset_key(URI), day) is not None

    # Retraining afterwards is not blocked by the refused batch.
    retrain = env.train(URI)
    assert retrain.success, failure_text(retrain)


def test_allow_new_classes_accepts_them(env: Env) -> None:
    day = "2026-01-11"
    batch = good_frame(day)
    batch.loc[:2, "churned"] = 7
    env.land(NEW_OK, day, batch)
    result = env.load(NEW_OK, day)
    assert result.success, failure_text(result)
    label = evaluations(result)[LABEL_CHECK_NAME]
    assert label.passed and "allow_new_classes" in (label.description or "")


@pytest.mark.parametrize(
    ("day", "content", "expected"),
    [
        ("2026-01-18", b"", "ArrowInvalid"),
        ("2026-01-19", b"PAR1 this is not parquet at all", "ArrowInvalid"),
        ("2026-01-20", None, "returned NoneType for partition 2026-01-20, expected a DataFrame"),
    ],
    ids=["zero-byte parquet", "garbage parquet", "not a DataFrame"],
)
def test_unreadable_python_batch_is_quarantined_and_alerted(
    env: Env, day: str, content: bytes | None, expected: str
) -> None:
    if content is not None:
        env.land(PY, day, content)
    result = env.load(PY, day)
    assert not result.success
    guard = evaluations(result)["mlops_schema_guard"]
    assert not guard.passed and expected in guard.description and f"partition {day}" in guard.description
    held = env.quarantine.get(dataset_key(PY), day)
    assert held is not None and any(expected in r for r in held.reasons)
    assert day not in env.materialized(PY)

    Recording.sent = []
    sensor = env.defs.resolve_sensor_def(f"{PY}__quality_sensor")
    tick = sensor(dg.build_sensor_context(instance=env.instance, resources={"mlops_notifier": Recording()}))
    alerts = [a for a in Recording.sent if a.partition == day]
    assert len(alerts) == 1 and "quarantined" in alerts[0].text and expected in alerts[0].text
    assert tick.run_requests == []


def test_a_python_source_bug_is_not_bad_data(env: Env) -> None:
    """A callable failing with something other than a read error is a bug in it: no quarantine."""
    day = "2026-01-21"
    result = env.load(PY, day)
    assert not result.success
    assert "source labels_source:load raised NameError" in failure_text(result)
    assert env.quarantine.get(dataset_key(PY), day) is None
    assert "mlops_schema_guard" not in evaluations(result)


def test_label_outcome_units() -> None:
    champion = Baseline(version="v1", classes=[0, 1])
    frame = pd.DataFrame({"y": [0, 1, 1.0, 7, None]})
    out = label_outcome(frame, "y", "classification", champion, allow_new_classes=False)
    assert not out.passed
    assert out.problems[0] == "label `y`: 1 null value(s) of 5"
    assert "1 value(s) outside the champion's classes [0, 1]: 7 (1)" in out.problems[1]
    assert label_outcome(frame.dropna(), "y", "classification", champion, True).passed
    first = label_outcome(frame.dropna(), "y", "classification", Baseline(), False)
    assert first.passed and first.note == "no champion yet: any label value is accepted"
    assert label_outcome(frame.dropna(), "y", "regression", champion, False).passed
    assert label_outcome(frame.drop(columns="y"), "y", "classification", champion, False).problems == [
        "label `y`: missing from the batch"
    ]
    masked = label_outcome(frame.dropna(), "y", "classification", champion, False, pii={"y"})
    assert "<pii> (1)" in masked.problems[0] and "7 (1)" not in masked.problems[0]


def test_training_label_errors_name_the_partitions() -> None:
    ts = pd.Series(pd.to_datetime(["2026-01-01 10:00", "2026-01-02 11:00", "2026-01-03 12:00"]))
    with pytest.raises(DataError, match=r"1 null value\(s\) \(partition 2026-01-02\)"):
        check_label(pd.Series([0, None, 1]), "classification", "y", ts)

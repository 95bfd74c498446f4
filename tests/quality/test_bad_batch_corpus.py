"""The bad-input corpus: every kind of bad batch, landed as the next daily partition of a pipeline that
already has a champion, fails its run with a message naming the column and the rule, trains and
promotes nothing, is quarantined (readable), is not materialized, and never reaches the training set.

The good history (3 daily partitions per pipeline) and the champions are built once per module.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_dagster import ParquetIOManager, build_definitions
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.keys import (
    candidate_key,
    champion_key,
    dataset_key,
    retrain_job_name,
    training_set_key,
)
from mlops_dagster.registry import records
from tests.run_output import failure_text

PQ, CSV = "corpus_pq", "corpus_csv"  # own names: the BentoML store is shared by the test session
GOOD_DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
RELAND_DAY = "2026-01-04"  # the re-landing test (before every corpus day)
FIRST_BAD_DAY = date(2026, 1, 10)
ROWS = 60

SPEC = """
name: {name}
dataset:
  source: {{uri: "{folder}/{{partition}}.{ext}"}}
  partitions: {{daily: {{start: "2026-01-01", end: "2026-03-01"}}}}
  entity: customer_id
  timestamp: event_time
  label: churned
quality:
  expectations:
    - {{type: expect_column_values_to_not_be_null, column: customer_id}}
    - {{type: expect_column_values_to_be_between, column: tenure_months, min_value: 0, max_value: 600}}
    - {{type: expect_column_values_to_be_between, column: monthly_charges, min_value: 0, max_value: 1000}}
    - {{type: expect_column_values_to_be_in_set, column: plan, value_set: [basic, standard, premium]}}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 1000}}
  metric: roc_auc
  features: [tenure_months, monthly_charges, plan]
gates:
  min: {{roc_auc: 0.6}}
  max_regression: 0.05
"""


def good_frame(day: str, n: int = ROWS) -> pd.DataFrame:
    """A good batch for one day: unique customers (ids carry the day), timestamps inside the day."""
    d = date.fromisoformat(day)
    rng = np.random.default_rng(d.toordinal())
    tenure = rng.integers(0, 120, n)
    charges = rng.uniform(10, 150, n).round(2)
    plan = rng.choice(["basic", "standard", "premium"], n)
    risk = -0.04 * tenure + 0.02 * charges + (plan == "basic") * 0.8 + rng.normal(scale=0.7, size=n)
    return pd.DataFrame(
        {
            "customer_id": d.toordinal() * 1000 + np.arange(n),
            "event_time": pd.Timestamp(d) + pd.to_timedelta(np.arange(n) * (1440 // n), unit="min"),
            "tenure_months": tenure,
            "monthly_charges": charges,
            "plan": plan,
            "churned": (risk > np.median(risk)).astype(int),
        }
    )


@dataclass
class Env:
    root: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    quarantine: Quarantine = field(init=False)

    def __post_init__(self) -> None:
        self.quarantine = Quarantine(ParquetIOManager().root())

    def land(self, pipeline: str, day: str, batch: pd.DataFrame | bytes) -> Path:
        ext = "csv" if pipeline == CSV else "parquet"
        path = self.root / pipeline / f"{day}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(batch, bytes):
            path.write_bytes(batch)
        elif ext == "csv":
            batch.to_csv(path, index=False)
        else:
            batch.to_parquet(path, index=False)
        return path

    def materialize(self, keys: list[dg.AssetKey], partition: str | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            list(self.defs.assets),
            selection=keys,
            instance=self.instance,
            resources=self.defs.resources,
            partition_key=partition,
            raise_on_error=False,
        )

    def retrain(self, pipeline: str) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(retrain_job_name(pipeline))
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def candidates(self, pipeline: str) -> list[str]:
        return [r.version for r in records.candidate_history(self.instance, pipeline, limit=1000)]

    def champion(self, pipeline: str) -> str | None:
        current = records.current_champion(self.instance, pipeline)
        return current.version if current else None

    def materialized(self, pipeline: str) -> set[str]:
        return set(self.instance.get_materialized_partitions(dataset_key(pipeline)))

    def training_set(self, pipeline: str) -> pd.DataFrame:
        """A fresh training-set read: everything downstream sees of the dataset."""
        result = self.materialize([training_set_key(pipeline)])
        assert result.success, failure_text(result)
        return pd.read_parquet(ParquetIOManager().path_for(training_set_key(pipeline), None).path)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A module-wide DAGSTER_HOME (the `storage` fixture is per test) with good history and champions."""
    base = tmp_path_factory.mktemp("bad_batch_corpus")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        root = base / "project"
        root.mkdir()
        for name, ext in ((PQ, "parquet"), (CSV, "csv")):
            (root / f"{name}.yaml").write_text(SPEC.format(name=name, folder=name, ext=ext))
        with dg.DagsterInstance.ephemeral() as instance:
            env = Env(root, build_definitions(root), instance)
            for pipeline in (PQ, CSV):
                for day in GOOD_DAYS:
                    env.land(pipeline, day, good_frame(day))
                    result = env.materialize([dataset_key(pipeline)], day)
                    assert result.success, failure_text(result)
                result = env.retrain(pipeline)
                assert result.success, failure_text(result)
                assert env.champion(pipeline) is not None
            yield env
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


def _cast_str(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(tenure_months=f["tenure_months"].astype(str) + " months")


@dataclass(frozen=True)
class Case:
    pipeline: str
    batch: Callable[[pd.DataFrame], pd.DataFrame | bytes]
    expected: list[str]  # in the run's failure text and the quarantine reasons; `{day}`: the partition
    raw: bool = False  # unreadable: the raw file bytes are quarantined, not a frame


def _broken_csv(f: pd.DataFrame) -> bytes:
    lines = f.to_csv(index=False).splitlines()
    lines.insert(10, '10000,2026-01-20 03:00:00,12,"50.5,basic,0')  # unterminated quote
    return ("\n".join(lines) + "\n").encode()


CORPUS: dict[str, Case] = {
    "empty frame": Case(PQ, lambda f: f.iloc[0:0], ["mlops_schema_guard", "the batch is empty (0 rows)"]),
    "missing column": Case(
        PQ,
        lambda f: f.drop(columns=["monthly_charges"]),
        ["mlops_schema_guard", "column `monthly_charges` (feature): missing from the batch"],
    ),
    "extra column": Case(
        PQ,
        lambda f: f.assign(coupon_code="SPRING"),
        ["mlops_schema_guard", "column `coupon_code`: new, not in the champion's schema"],
    ),
    "renamed column": Case(
        PQ,
        lambda f: f.rename(columns={"plan": "plan_type"}),
        [
            "column `plan` (feature): missing from the batch (renamed to one of ['plan_type']?)",
            "column `plan_type`: new",
        ],
    ),
    "dtype int -> string": Case(
        PQ, _cast_str, ["mlops_schema_guard", "column `tenure_months`: int64 -> object"]
    ),
    "all-null column": Case(
        PQ,
        lambda f: f.assign(monthly_charges=np.nan),
        ["mlops_schema_guard", "column `monthly_charges` (feature): all values are null"],
    ),
    "null entity keys": Case(
        PQ,
        lambda f: f.assign(customer_id=f["customer_id"].astype(float).where(f.index % 6 != 0)),
        [
            "column `customer_id` (entity): 10 null value(s)",
            "expect_column_values_to_not_be_null__customer_id",
        ],
    ),
    "duplicate entity+timestamp": Case(
        PQ,
        lambda f: pd.concat([f, f.iloc[:4]], ignore_index=True),
        ["columns `customer_id` + `event_time`: 4 duplicate row(s)"],
    ),
    "timestamps outside the partition": Case(
        PQ,
        lambda f: f.assign(
            event_time=f["event_time"].where(f.index >= 5, f["event_time"] - pd.Timedelta(days=2))
        ),
        ["column `event_time` (timestamp): 5 row(s) outside partition"],
    ),
    "unparseable timestamps": Case(
        PQ,
        lambda f: f.assign(event_time=f["event_time"].astype(str).where(f.index >= 3, "yesterday")),
        [
            "column `event_time`: datetime64[ns] -> object",
            "column `event_time` (timestamp): 3 value(s) are not",
        ],
    ),
    "timezone-aware timestamps": Case(
        PQ,
        lambda f: f.assign(event_time=f["event_time"].dt.tz_localize("UTC")),
        ["mlops_schema_guard", "column `event_time`: datetime64[ns] -> datetime64[ns, UTC]"],
    ),
    "mixed UTC offsets (csv)": Case(
        CSV,
        lambda f: f.assign(
            event_time=f["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S")
            + np.where(f.index % 2 == 0, "+00:00", "+01:00")
        ),
        ["column `event_time` (timestamp): values with mixed time zones / UTC offsets"],
    ),
    "out-of-range numerics": Case(
        PQ,
        lambda f: f.assign(tenure_months=f["tenure_months"].where(f.index >= 3, 900)),
        ["expect_column_values_to_be_between__tenure_months", "column `tenure_months`: 3 unexpected"],
    ),
    "unseen categories": Case(
        PQ,
        lambda f: f.assign(plan=f["plan"].where(f.index % 10 != 0, "enterprise")),
        ["expect_column_values_to_be_in_set__plan", "column `plan`: 6 unexpected"],
    ),
    "infinite values": Case(
        PQ,
        lambda f: f.assign(monthly_charges=f["monthly_charges"].where(f.index >= 2, np.inf)),
        ["mlops_schema_guard", "column `monthly_charges`: 2 infinite value(s)"],
    ),
    "csv with a broken row": Case(
        CSV,
        _broken_csv,
        [
            "corpus_csv: cannot read ",
            "/corpus_csv/{day}.csv: Error tokenizing data. C error: EOF inside string starting at row 10",
        ],
        raw=True,
    ),
    "zero-byte csv": Case(CSV, lambda f: b"", ["/corpus_csv/{day}.csv is empty (0 bytes)"], raw=True),
    "zero-byte parquet": Case(PQ, lambda f: b"", ["/corpus_pq/{day}.parquet is empty (0 bytes)"], raw=True),
    "truncated parquet": Case(
        PQ,
        lambda f: _parquet_bytes(f)[:200],
        ["corpus_pq: cannot read ", "/corpus_pq/{day}.parquet: "],
        raw=True,
    ),
}
DAYS = {name: (FIRST_BAD_DAY + timedelta(days=i)).isoformat() for i, name in enumerate(CORPUS)}
SINGLE_CLASS_DAY = (FIRST_BAD_DAY + timedelta(days=len(CORPUS))).isoformat()  # the latest of all


def _parquet_bytes(f: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    f.to_parquet(buf, index=False)
    return buf.getvalue()


def _days(frame: pd.DataFrame) -> set[str]:
    """The partitions rows came from, by event time and by the day encoded in the customer ids."""
    by_time = set(frame["event_time"].dt.strftime("%Y-%m-%d"))
    by_id = {date.fromordinal(int(i) // 1000).isoformat() for i in frame["customer_id"]}
    assert by_time == by_id
    return by_time


def _assert_not_downstream(env: Env, pipeline: str, day: str) -> None:
    """The partition is not materialized, and a fresh training-set read holds exactly the
    materialized partitions: nothing of the refused batch."""
    assert day not in env.materialized(pipeline)
    assert not Path(ParquetIOManager().path_for(dataset_key(pipeline), day).path).exists()
    seen = _days(env.training_set(pipeline))
    assert day not in seen
    assert seen == env.materialized(pipeline)


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_batch_is_refused_and_quarantined(env: Env, case: str) -> None:
    spec, day = CORPUS[case], DAYS[case]
    pipeline, key = spec.pipeline, dataset_key(spec.pipeline)
    champion, candidates = env.champion(pipeline), env.candidates(pipeline)
    batch = spec.batch(good_frame(day))
    landed = env.land(pipeline, day, batch)

    # The landing run, with the whole chain downstream: the dataset step fails, nothing else runs.
    result = env.materialize(
        [key, training_set_key(pipeline), candidate_key(pipeline), champion_key(pipeline)], day
    )
    assert not result.success
    text = failure_text(result)
    expected = [fragment.format(day=day) for fragment in spec.expected]
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert result.get_step_success_events() == []

    # Nothing trained, nothing promoted.
    assert env.champion(pipeline) == champion
    assert env.candidates(pipeline) == candidates

    # Quarantined, with the column and the rule in its reasons, and readable.
    held = env.quarantine.get(key, day)
    assert held is not None
    assert day in env.quarantine.held_partitions(key)
    for fragment in expected:
        assert any(fragment in reason for reason in held.reasons), held.reasons
    if spec.raw:
        assert held.report["files"] == [f"source{landed.suffix}"]
        assert env.quarantine.read(key, day) is None
        assert (Path(held.path) / f"source{landed.suffix}").read_bytes() == landed.read_bytes()
    else:
        assert isinstance(batch, pd.DataFrame)
        kept = env.quarantine.read(key, day)
        assert isinstance(kept, pd.DataFrame)
        pd.testing.assert_frame_equal(kept, batch.reset_index(drop=True), check_dtype=False)
        assert held.report["files"] == ["data.parquet"]
        assert held.report["failed_checks"] and all(c in text for c in held.report["failed_checks"])

    _assert_not_downstream(env, pipeline, day)


@pytest.mark.filterwarnings("ignore:Only one class is present in y_true")
def test_single_class_label_batch_passes_but_cannot_be_trained_on(env: Env) -> None:
    """A day on which nobody churned is a legitimate batch: no dataset check refuses it (a single
    day may well hold one class), so it is materialized, not quarantined. What happens at retrain:
    the training set (all materialized days) still has both classes, so the label checks before
    training pass; but this is the latest day and the time-ordered holdout is the latest 20% of rows,
    so the holdout lies entirely inside it and holds one class only. roc_auc, the gating metric,
    cannot be computed on it: the candidate step fails with a DataError naming the metric and the
    holdout's single label value, not the label column (`churned`). Nothing is stored, the champion
    step does not run, the gates are never consulted, and the champion stays."""
    day = SINGLE_CLASS_DAY
    champion, candidates = env.champion(PQ), env.candidates(PQ)
    env.land(PQ, day, good_frame(day).assign(churned=0))
    result = env.materialize([dataset_key(PQ)], day)
    assert result.success, failure_text(result)
    assert env.quarantine.get(dataset_key(PQ), day) is None
    assert day in env.materialized(PQ)

    retrain = env.retrain(PQ)
    assert not retrain.success
    training = pd.read_parquet(ParquetIOManager().path_for(training_set_key(PQ), None).path)
    seen = _days(training)
    assert day in seen and seen == env.materialized(PQ)
    assert set(training["churned"]) == {0, 1}
    holdout_rows = len(training) - int(len(training) * 0.8)  # one row per timestamp
    text = failure_text(retrain)
    assert (
        f"metric 'roc_auc' cannot be computed on the holdout ({holdout_rows} rows): "
        "label column 'churned' has values ['0'] there" in text
    ), text
    assert {e.step_key for e in retrain.all_events if e.is_step_failure} == {f"{PQ}__candidate"}
    assert {e.step_key for e in retrain.get_step_success_events()} == {f"{PQ}__training_set"}
    assert env.champion(PQ) == champion
    assert env.candidates(PQ) == candidates


@pytest.mark.parametrize(
    ("pipeline", "bad"),
    [
        (PQ, lambda f: f.assign(plan=f["plan"].where(f.index % 10 != 0, "enterprise"))),
        (CSV, lambda f: b""),
    ],
    ids=["parquet frame", "csv file"],
)
def test_relanding_a_fixed_batch_releases_the_quarantine(env: Env, pipeline: str, bad: Callable) -> None:
    """A fixed batch landed for a quarantined partition passes, releases the entry and is read
    downstream. For the CSV pipeline this is also the first good CSV batch checked against a champion:
    its timestamps are text until parsed, and must not count as a dtype change."""
    day, key = RELAND_DAY, dataset_key(pipeline)
    env.land(pipeline, day, bad(good_frame(day)))
    assert not env.materialize([key], day).success
    assert env.quarantine.get(key, day) is not None
    assert day not in env.materialized(pipeline)

    env.land(pipeline, day, good_frame(day))
    result = env.materialize([key], day)
    assert result.success, failure_text(result)
    assert env.quarantine.get(key, day) is None
    assert day not in env.quarantine.held_partitions(key)
    assert day in env.materialized(pipeline)
    assert day in _days(env.training_set(pipeline))


def test_a_frame_with_repeated_column_names_is_refused_and_kept(tmp_path):  # type: ignore[no-untyped-def]
    """Only a python source can return repeated column names; the guard refuses, quarantine keeps it."""
    import pandas as pd

    from mlops_dagster.io.quarantine import Quarantine
    from mlops_dagster.quality.schema_guard import guard_batch
    from mlops_dagster.spec.models import PipelineSpec

    spec = PipelineSpec.model_validate(
        {
            "name": "dup",
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
            "model": {"task": "regression", "estimator": "sklearn.linear_model.Ridge", "metric": "r2"},
        }
    )
    frame = pd.DataFrame([[1, pd.Timestamp("2026-01-01"), 1.0, 2.0]], columns=["id", "ts", "y", "y"])
    result = guard_batch(frame, spec, None, None)
    assert not result.passed and "['y'] appear more than once" in result.problems[0]
    from upath import UPath

    q = Quarantine(UPath(tmp_path))
    q.hold(dg.AssetKey(["dup", "dataset"]), None, {"reasons": result.problems}, frame=frame)
    kept = q.read(dg.AssetKey(["dup", "dataset"]), None)
    assert list(kept.columns) == ["id", "ts", "y", "y__3"]

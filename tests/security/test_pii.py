"""Declared pii never leaves its source raw: not as a model feature, not in any stored artifact or log.

A churn-like pipeline whose dataset has an `email` column declared in `dataset.pii`, with `model.features`
left out (so every other column is a feature) and an edge (ONNX) target. It loads three days, retrains
(training set -> candidate -> champion -> edge bundle), has one batch refused by an expectation on the
email column (quarantined), and shows it with `mlops-dagster quarantine show`. Then every file under
DAGSTER_HOME (the sqlite event log, compute logs, the Parquet storage root, quarantine) and every
BentoML model of the pipeline (model.joblib, the card, reference sample, drift profile, model.onnx) is
searched for the addresses: none is found.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.cli import main
from mlops_dagster.errors import DataError
from mlops_dagster.keys import Meta, candidate_key, dataset_key, retrain_job_name
from mlops_dagster.registry import records
from tests.quality.small_pipeline import GOOD_DAYS, good_frame
from tests.run_output import failure_text

NAME = "pii_demo"
NEEDLE = "@example.com"  # every address ends with it; a hash or a mask never contains it
BAD_DAY = "2026-01-09"
SPEC = f"""
name: {NAME}
dataset:
  source: {{uri: "landing/{{partition}}.parquet"}}
  partitions: {{daily: {{start: "2026-01-01", end: "2026-03-01"}}}}
  entity: customer_id
  timestamp: event_time
  label: churned
  pii: [email]
quality:
  expectations:
    - {{type: expect_column_value_lengths_to_be_between, column: email, max_value: 30}}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {{max_iter: 1000}}
  metric: roc_auc
gates:
  min: {{roc_auc: 0.55}}
serving:
  targets: [edge]
"""


def with_email(frame: pd.DataFrame, long: bool = False) -> pd.DataFrame:
    name = "a.very.long.mailbox.name.indeed" if long else "c"
    return frame.assign(email=[f"{name}{i}{NEEDLE}" for i in frame["customer_id"]])


def _hits_in_file(path: Path, needle: str = NEEDLE) -> list[str]:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        found = [c for c in frame.columns if frame[c].astype(str).str.contains(needle, regex=False).any()]
        return [f"{path} column {c}" for c in found]
    data = path.read_bytes()
    if data.startswith(b"SQLite format 3"):
        hits = []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for (table,) in db.execute("select name from sqlite_master where type = 'table'").fetchall():
                for row in db.execute(f'select * from "{table}"'):
                    if any(needle in str(v) for v in row):
                        hits.append(f"{path} table {table}")
                        break
        return hits
    return [str(path)] if needle.encode() in data else []


def _hits(folder: Path, needle: str = NEEDLE) -> list[str]:
    return [
        hit for path in sorted(folder.rglob("*")) if path.is_file() for hit in _hits_in_file(path, needle)
    ]


def test_no_raw_pii_in_any_artifact(storage: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import bentoml

    project = tmp_path / "project"
    (project / "landing").mkdir(parents=True)
    (project / f"{NAME}.yaml").write_text(SPEC)
    for day in GOOD_DAYS:
        with_email(good_frame(day)).to_parquet(project / "landing" / f"{day}.parquet", index=False)
    with_email(good_frame(BAD_DAY), long=True).to_parquet(project / "landing" / f"{BAD_DAY}.parquet")
    defs = build_definitions(project)

    with dg.DagsterInstance.get() as instance:  # sqlite under DAGSTER_HOME: the event log is searched
        for day in GOOD_DAYS:
            result = dg.materialize(
                list(defs.assets),
                selection=[dataset_key(NAME)],
                instance=instance,
                resources=defs.resources,
                partition_key=day,
            )
            assert result.success
        retrain = defs.resolve_job_def(retrain_job_name(NAME)).execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert retrain.success, failure_text(retrain)
        champion = records.current_champion(instance, NAME)
        assert champion is not None
        features = records.candidate_metadata(instance, NAME, champion.version)[Meta.FEATURES]
        assert features == ["tenure_months", "monthly_charges", "plan"]  # the default list, without email
        bad = dg.materialize(
            list(defs.assets),
            selection=[dataset_key(NAME)],
            instance=instance,
            resources=defs.resources,
            partition_key=BAD_DAY,
            raise_on_error=False,
        )
        assert not bad.success
        assert "expect_column_value_lengths_to_be_between__email" in failure_text(bad)
        event = instance.get_latest_materialization_event(dataset_key(NAME))
        assert "<pii>" in event.asset_materialization.metadata[Meta.PREVIEW].value
        assert instance.get_latest_materialization_event(candidate_key(NAME)) is not None

    capsys.readouterr()
    assert main(["quarantine", "show", NAME, BAD_DAY]) == 0
    assert main(["quarantine", "show", NAME, BAD_DAY, "--json"]) == 0
    shown = capsys.readouterr().out
    assert "<pii>" in shown and NEEDLE not in shown

    models = [m for m in bentoml.models.list() if m.tag.name in (NAME, f"{NAME}_edge")]
    assert {m.tag.name for m in models} == {NAME, f"{NAME}_edge"}
    assert any(Path(m.path, "model.onnx").exists() for m in models)
    # The search does see into Parquet and the sqlite event log: the landed files hold the addresses,
    # and the event log holds the pipeline's name.
    assert len(_hits(project / "landing")) == len(GOOD_DAYS) + 1
    assert any(" table " in hit for hit in _hits(storage, needle=f"{NAME}/dataset"))
    hits = _hits(storage)
    for model in models:
        hits += _hits(Path(model.path))
    assert hits == []


def test_a_pii_feature_fails_before_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_dagster.spec.models import PipelineSpec
    from mlops_dagster.training import train

    spec = PipelineSpec.model_validate(
        {
            "name": "p",
            "dataset": {
                "source": {"uri": "x.parquet"},
                "entity": "customer_id",
                "timestamp": "event_time",
                "label": "churned",
                "pii": ["email"],
            },
            "model": {
                "task": "classification",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "metric": "roc_auc",
            },
        }
    )
    frame = with_email(good_frame(GOOD_DAYS[0]))
    monkeypatch.setattr(train, "_pipeline", lambda *a: pytest.fail("fitting started"))
    with pytest.raises(DataError, match=r"column\(s\) \['email'\] are declared pii"):
        train.train_candidate(spec, frame, ["tenure_months", "email"])

    from mlops_dagster.factory.training import dataset_feature_columns

    assert "email" not in dataset_feature_columns(spec, frame)


def test_check_samples_of_a_pii_column_are_masked() -> None:
    from mlops_dagster.factory.quality_checks import expectation_results
    from mlops_dagster.quality.runner import run_expectations
    from mlops_dagster.spec.models import ExpectationSpec

    frame = pd.DataFrame({"email": [f"x{i}{NEEDLE}" for i in range(5)] + [f"x0{NEEDLE}"], "n": range(6)})
    expectations = [
        ExpectationSpec.model_validate(
            {"type": "expect_column_value_lengths_to_be_between", "column": "email", "max_value": 3}
        ),
        ExpectationSpec.model_validate(
            {
                "type": "expect_column_most_common_value_to_be_in_set",
                "column": "email",
                "value_set": ["nobody"],
            }
        ),
    ]
    outcomes = run_expectations(frame, expectations)
    assert any(NEEDLE in str(o.unexpected_sample) + str(o.observed_value) for o in outcomes)  # raw in GX
    results = expectation_results(dg.AssetKey(["p", "dataset"]), outcomes, None, expectations, {"email"})
    shown = str([(r.description, dict(r.metadata)) for r in results])
    assert NEEDLE not in shown and "<pii>" in shown

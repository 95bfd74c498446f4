"""Bad data at run time: each case fails the run with a message naming the file / column / callable,
promotes nothing, and leaves no half-written data or model version behind."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_dagster import ParquetIOManager, build_definitions
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.registry import records
from tests.run_output import failure_text

PROJECT = Path(__file__).parents[1] / "projects" / "planted_future"

SPEC = """
name: tiny
dataset:
  source: {{uri: {uri}}}
  entity: user
  timestamp: ts
  label: y
{features}
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  metric: roc_auc
  features: [score]
"""

GROUP = """
feature_groups:
  - name: tiny_group
    inputs: [tiny]
    transform: {transform}
    entity: user
    timestamp: ts
    consumers: [tiny]
"""


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    return pd.DataFrame(
        {
            "user": rng.integers(0, 20, n),
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "score": score,
            "y": (score + rng.normal(scale=0.5, size=n) > 0).astype(int),
        }
    )


def project(
    root: Path, *, data: pd.DataFrame | None = None, uri: str = "data.parquet", transform: str | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if data is not None:
        data.to_parquet(root / "data.parquet")
    features = "features: [tiny_group]" if transform else ""
    (root / "tiny.yaml").write_text(SPEC.format(uri=uri, features=features))
    if transform:
        (root / "groups.yaml").write_text(GROUP.format(transform=transform))
    return root


def run_all(root: Path) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    defs = build_definitions(root)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        list(defs.assets), instance=instance, resources=defs.resources, raise_on_error=False
    )
    return result, instance


def _store_versions(name: str) -> set[str]:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return {str(m.tag.version) for m in bentoml.models.list(name)}
    except NotFound:
        return set()


def _leftovers(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def transforms_on_path(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(PROJECT))
    yield
    sys.modules.pop("transforms", None)


# name: (change to a good frame, fragments the failure must contain, whether the batch is quarantined)
CASES = {
    "missing column": (
        lambda f: f.drop(columns=["score"]),
        ["mlops_schema_guard", "`score`", "missing"],
        True,
    ),
    "empty batch": (lambda f: f.iloc[0:0], ["mlops_schema_guard", "empty (0 rows)"], True),
    "timestamp not parseable": (
        lambda f: f.assign(ts="yesterday"),
        ["`ts` (timestamp)", "not datetimes"],
        True,
    ),
    "null entity": (
        lambda f: f.assign(user=f["user"].astype(float).where(f.index % 5 != 0)),
        ["`user` (entity)", "null value(s)"],
        True,
    ),
    "single-class label": (lambda f: f.assign(y=1), ["label column 'y'", "single class"], False),
    # Refused at the dataset by the built-in label check, so the batch is quarantined, never stored.
    "null labels": (
        lambda f: f.assign(y=f["y"].astype(float).where(f.index % 7 != 0)),
        ["mlops_label", "label `y`", "null value(s)"],
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_fails_clearly_and_promotes_nothing(case, tmp_path, storage):  # type: ignore[no-untyped-def]
    change, expected, quarantined = CASES[case]
    before = _store_versions("tiny")
    root = project(tmp_path / "p", data=change(frame()))
    result, instance = run_all(root)
    assert not result.success
    text = failure_text(result)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in: {text}"
    assert records.current_champion(instance, "tiny") is None
    assert _store_versions("tiny") == before  # no version written
    assert _leftovers(storage) == []
    held = Quarantine(ParquetIOManager().root()).get(dg.AssetKey(["tiny", "dataset"]), None)
    assert (held is not None) == quarantined
    if quarantined:
        assert any(fragment in " ".join(held.reasons) for fragment in expected[1:])


def test_missing_source_file_names_the_path(tmp_path, storage):  # type: ignore[no-untyped-def]
    root = project(tmp_path / "p", uri="nowhere.parquet")
    result, _ = run_all(root)
    assert not result.success
    assert "nowhere.parquet does not exist" in failure_text(result)


def test_zero_byte_file_is_refused(tmp_path, storage):  # type: ignore[no-untyped-def]
    root = project(tmp_path / "p", uri="data.csv")
    (root / "data.csv").write_bytes(b"")
    result, _ = run_all(root)
    assert "data.csv is empty (0 bytes)" in failure_text(result)


def test_csv_with_a_broken_row_names_the_file(tmp_path, storage):  # type: ignore[no-untyped-def]
    root = project(tmp_path / "p", uri="data.csv")
    good = frame(20).to_csv(index=False)
    (root / "data.csv").write_text(good + '3,2026-02-01 00:00:00,0.5,1,extra,"unterminated\n')
    result, _ = run_all(root)
    text = failure_text(result)
    assert not result.success and "cannot read" in text and "data.csv" in text


def test_transform_that_raises_names_the_transform(tmp_path, storage, transforms_on_path):  # type: ignore[no-untyped-def]
    root = project(tmp_path / "p", data=frame(), transform="transforms:raises")
    result, instance = run_all(root)
    text = failure_text(result)
    assert "features/tiny_group: transform transforms:raises raised RuntimeError: boom" in text
    assert records.current_champion(instance, "tiny") is None
    mats = instance.get_latest_materialization_event(dg.AssetKey(["tiny", "candidate"]))
    assert mats is None  # nothing downstream of the failed group ran


def test_a_failed_run_keeps_the_previous_champion(tmp_path, storage):  # type: ignore[no-untyped-def]
    root = project(tmp_path / "p", data=frame())
    defs = build_definitions(root)
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(list(defs.assets), instance=instance, resources=defs.resources).success
    champion = records.current_champion(instance, "tiny")
    assert champion is not None
    frame().assign(y=0).to_parquet(root / "data.parquet")  # the next batch has a single class
    result = dg.materialize(
        list(defs.assets), instance=instance, resources=defs.resources, raise_on_error=False
    )
    assert not result.success
    assert records.current_champion(instance, "tiny") == champion

"""Governance spec fields: each mistake is one `file:line field: message` issue, and the assets and
the automation sensor exist exactly when the spec asks for them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.keys import feedback_key, live_performance_key, predictions_key
from mlops_dagster.spec import load_specs

# Line numbers below are those of this text; edits replace text in place and keep them stable.
PIPELINE = """\
name: churn
dataset:
  source:
    uri: data/churn/{partition}.parquet
  partitions: {daily: {start: "2026-01-01"}}
  entity: customer_id
  timestamp: event_time
  label: churned
feedback:
  source:
    uri: data/labels/{partition}.csv
  entity: cust
  timestamp: ts
  label: outcome
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  metric: roc_auc
monitoring:
  performance:
    metric: roc_auc
    min: 0.6
    max_drop: 0.05
    window: 3
    min_samples: 50
    cooldown: 6h
serving:
  targets: [batch, cloud]
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "churn.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def edit(old: str, new: str) -> str:
    assert PIPELINE.count(old) == 1, f"{old!r} must occur exactly once in the base spec"
    return PIPELINE.replace(old, new)


def one_issue(path: Path) -> SpecIssue:
    with pytest.raises(SpecError) as info:
        load_specs(path)
    issues = info.value.issues
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def test_the_base_spec_loads(tmp_path: Path) -> None:
    (spec,) = load_specs(write(tmp_path, PIPELINE))
    assert spec.feedback is not None and spec.feedback.label == "outcome"
    assert spec.monitoring.performance is not None and spec.monitoring.performance.window == 3


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        (
            "targets: [batch, cloud]",
            "targets: [cloud]",
            9,
            "feedback",
            "feedback needs `batch` in serving.targets",
        ),
        (
            "targets: [batch, cloud]",
            "targets: [batch, cloud, batch]",
            28,
            "serving.targets[2]",
            "target 'batch' is listed twice",
        ),
        (
            "    min: 0.6\n    max_drop: 0.05\n",
            "    # no threshold\n\n",
            20,
            "monitoring.performance",
            "give `min`, `max_drop` or both: without a threshold nothing is ever breached",
        ),
        (
            "cooldown: 6h",
            "cooldown: six hours",
            26,
            "monitoring.performance.cooldown",
            "expected a duration like '30m', '6h' or '1d', got 'six hours'",
        ),
        (
            "cooldown: 6h",
            "cooldown: 400d",
            26,
            "monitoring.performance.cooldown",
            "duration '400d' is longer than 366d, the longest accepted",
        ),
        ("window: 3", "window: 0", 24, "monitoring.performance.window", "greater than or equal to 1"),
        (
            "min_samples: 50",
            "min_samples: 0",
            25,
            "monitoring.performance.min_samples",
            "greater than or equal to 1",
        ),
        (
            "max_drop: 0.05",
            "max_drop: -0.1",
            23,
            "monitoring.performance.max_drop",
            "greater than or equal to 0",
        ),
        (
            "  timestamp: ts",
            "  timestamp: cust",
            13,
            "feedback.timestamp",
            "timestamp and entity must be different columns (both are 'cust')",
        ),
        (
            "entity: customer_id",
            "entity: prediction",
            6,
            "dataset.entity",
            "'prediction' is a column `churn/predictions` writes itself",
        ),
        (
            "targets: [batch, cloud]",
            "targets: [batch]\n  prediction_log: {enabled: true}",
            29,
            "serving.prediction_log.enabled",
            "the prediction log records what the bento (`cloud`) and the edge predictor (`edge`) serve",
        ),
    ],
    ids=[
        "feedback without batch",
        "duplicate target",
        "performance without thresholds",
        "bad cooldown",
        "cooldown too long",
        "window 0",
        "min_samples 0",
        "negative max_drop",
        "feedback keys equal",
        "reserved entity",
        "log without a served target",
    ],
)
def test_governance_mistakes(tmp_path: Path, old: str, new: str, line: int, field: str, message: str) -> None:
    path = write(tmp_path, edit(old, new))
    issue = one_issue(path)
    assert (issue.file, issue.line, issue.field) == (str(path), line, field)
    assert message in issue.message
    assert str(issue).startswith(f"{path}:{line} {field}: ")


def test_a_partition_placeholder_in_feedback_needs_a_partitioned_dataset(tmp_path: Path) -> None:
    text = edit('  partitions: {daily: {start: "2026-01-01"}}', "  # not partitioned").replace(
        "data/churn/{partition}.parquet", "data/churn.parquet"
    )
    path = write(tmp_path, text)
    issue = one_issue(path)
    assert (issue.file, issue.line, issue.field) == (str(path), 11, "feedback.source.uri")
    assert issue.message.startswith("has a {partition} placeholder but the dataset is not partitioned")
    assert f"{path}:2" in issue.message  # where the dataset is declared


def _keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().get_all_asset_keys())


@pytest.mark.parametrize(
    ("targets", "feedback", "expected"),
    [
        ("[batch, cloud]", True, {"predictions", "feedback", "live_performance"}),
        ("[batch]", False, {"predictions"}),
        ("[cloud]", False, set()),
    ],
)
def test_the_assets_exist_when_the_spec_asks(
    tmp_path: Path, storage: Path, targets: str, feedback: bool, expected: set[str]
) -> None:
    text = edit("targets: [batch, cloud]", f"targets: {targets}")
    if not feedback:
        block = "feedback:\n  source:\n    uri: data/labels/{partition}.csv\n  entity: cust\n"
        text = text.replace(block + "  timestamp: ts\n  label: outcome\n", "")
    defs = build_definitions(write(tmp_path, text))
    governed = {predictions_key("churn"), feedback_key("churn"), live_performance_key("churn")}
    assert {k.path[-1] for k in _keys(defs) & governed} == expected
    automated = {predictions_key("churn"), live_performance_key("churn")} & _keys(defs)
    sensors = {s.name: s for s in defs.sensors or []}
    if automated:
        sensor = sensors["churn__automation_sensor"]
        assert set(sensor.asset_selection.resolve(defs.resolve_asset_graph())) == automated
    else:
        assert "churn__automation_sensor" not in sensors
    assert ("churn__packaging_sensor" in sensors) == ("cloud" in targets)


def test_compute_sizes_the_governance_steps(tmp_path: Path, storage: Path) -> None:
    text = (
        PIPELINE
        + "compute:\n  predictions: {cpu: '2'}\n  feedback: {memory: 1Gi}\n  live_performance: {cpu: 500m}\n"
    )
    defs = build_definitions(write(tmp_path, text))
    tags = {
        key.path[-1]: defs.get_assets_def(key).op.tags
        for key in (predictions_key("churn"), feedback_key("churn"))
    }
    assert tags["predictions"]["ecs/cpu"] == "2048" and tags["feedback"]["ecs/memory"] == "1024"

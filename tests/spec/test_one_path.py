"""One path for every spec (issue 9 point 13): specs built in Python get the checks YAML files get.

`build_definitions` given `PipelineSpec` objects used to skip the loader's cross-file checks; now it
runs `resolve_specs`, as `load_specs`, `mlops-dagster validate` and the component do.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import mlops_dagster.component
from mlops_dagster import FeatureGroupSpec, PipelineSpec, build_definitions, load_specs
from mlops_dagster.cli import main
from mlops_dagster.errors import SpecError, SpecIssue

GROUPS = """\
feature_groups:
  - name: activity
    inputs: [churn]
    transform: assets.features:customer_activity
    entity: customer_id
    timestamp: event_time
    pii: [email]
    consumers: [churn]
"""


def pipeline(**changes: Any) -> PipelineSpec:
    """A valid spec built in Python, with `changes` merged into its top-level sections."""
    data: dict[str, Any] = {
        "name": "churn",
        "dataset": {
            "source": {"uri": "x.parquet"},
            "entity": "customer_id",
            "timestamp": "event_time",
            "label": "churned",
        },
        "model": {"task": "classification", "estimator": "sklearn.linear_model.LogisticRegression"},
    }
    data["model"]["metric"] = "roc_auc"
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return PipelineSpec.model_validate(data)


def group(**changes: Any) -> FeatureGroupSpec:
    data = {
        "name": "activity",
        "inputs": ["churn"],
        "transform": "assets.features:customer_activity",
        "entity": "customer_id",
        "timestamp": "event_time",
        "pii": ["email"],
        "consumers": ["churn"],
    }
    return FeatureGroupSpec.model_validate({**data, **changes})


def build_issue(*specs_or_paths: PipelineSpec | Path) -> SpecIssue:
    with pytest.raises(SpecError) as info:
        build_definitions(*specs_or_paths)
    (issue,) = info.value.issues
    return issue


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"model": {"features": ["tenure", "churned"]}},
            "model.features[1]",
            "label 'churned' is used as a feature",
        ),
        (
            {"model": {"features": ["event_time"]}},
            "model.features[0]",
            "'event_time' is the entity or timestamp column, not a feature",
        ),
        (
            {"dataset": {"pii": ["phone"]}, "model": {"features": ["phone"]}},
            "model.features[0]",
            "'phone' is declared PII (dataset.pii): PII is never a model feature",
        ),
        (
            {"monitoring": {"drift": {"methods": {"tenure": "kolmogorov"}}}},
            "monitoring.drift.methods.tenure",
            "unknown drift method 'kolmogorov'",
        ),
        (
            {"features": ["activity"]},
            "features[0]",
            "unknown feature group 'activity' (known: none loaded)",
        ),
    ],
    ids=["label", "timestamp", "pii", "drift-method", "unknown-group"],
)
def test_build_definitions_checks_specs_built_in_python(
    changes: dict[str, Any], field: str, message: str
) -> None:
    issue = build_issue(pipeline(**changes))
    assert (issue.file, issue.line, issue.field) == ("<spec churn>", None, field)
    assert message in issue.message


def test_group_pii_attached_in_python_is_never_a_feature() -> None:
    spec = pipeline(features=["activity"], model={"features": ["email"]})
    issue = build_issue(spec.with_feature_groups((group(),)))
    assert str(issue) == (
        "<spec churn> model.features[0]: 'email' is declared PII (feature group 'activity' pii): "
        "PII is never a model feature"
    )


def test_attached_group_must_list_the_pipeline_as_consumer() -> None:
    spec = pipeline(features=["activity"]).with_feature_groups((group(consumers=["demand"]),))
    issue = build_issue(spec)
    assert issue.field == "features[0]"
    assert issue.message == (
        "feature group 'activity' does not list 'churn' in its consumers (<spec activity>)"
    )


def test_python_spec_and_file_share_one_name_space(tmp_path: Path) -> None:
    spec_file = tmp_path / "churn.yaml"
    spec_file.write_text(
        textwrap.dedent(
            """\
            name: churn
            dataset: {source: {uri: x.parquet}, entity: customer_id, timestamp: event_time, label: churned}
            model: {task: classification, estimator: sklearn.linear_model.LogisticRegression, metric: roc_auc}
            """
        )
    )
    issue = build_issue(pipeline(), spec_file)
    assert issue.message.startswith("duplicate pipeline name 'churn' (first declared in <spec churn>)")
    assert (issue.file, issue.line) == (str(spec_file), 1)


def test_python_spec_consumes_a_group_declared_in_a_file(tmp_path: Path) -> None:
    groups = tmp_path / "groups.yaml"
    groups.write_text(GROUPS)
    defs = build_definitions(pipeline(features=["activity"]), groups)
    graph = defs.resolve_asset_graph()
    training_set = graph.get(dg.AssetKey(["churn", "training_set"]))
    assert dg.AssetKey(["features", "activity"]) in training_set.parent_keys


def test_specs_from_load_specs_pass_again(tmp_path: Path) -> None:
    """Loaded specs handed back to build_definitions (as the demo's tests do) are the same specs."""
    (tmp_path / "groups.yaml").write_text(GROUPS)
    (tmp_path / "churn.yaml").write_text(
        "name: churn\nfeatures: [activity]\n"
        "dataset: {source: {uri: x.parquet}, entity: customer_id, timestamp: event_time, label: churned}\n"
        "model: {task: classification, estimator: sklearn.linear_model.LogisticRegression, metric: roc_auc}\n"
    )
    specs = load_specs(tmp_path)
    defs = build_definitions(*specs, *load_specs(tmp_path))  # twice: same declarations, not clashes
    assert dg.AssetKey(["features", "activity"]) in defs.resolve_asset_graph().get_all_asset_keys()


def test_validate_cli_reports_pii_feature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "groups.yaml").write_text(GROUPS)
    path = tmp_path / "churn.yaml"
    path.write_text(
        "name: churn\nfeatures: [activity]\n"
        "dataset: {source: {uri: x.parquet}, entity: customer_id, timestamp: event_time, label: churned}\n"
        "model:\n  task: classification\n  estimator: sklearn.linear_model.LogisticRegression\n"
        "  metric: roc_auc\n  features: [tenure, email]\n"
    )
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:8 model.features[1]: 'email' is declared PII (feature group 'activity' pii): "
        "PII is never a model feature",
        "error: 1 spec issue(s)",
    ]


def test_component_uses_only_the_public_spec_api() -> None:
    """The component goes through `mlops_dagster.spec`, not the loader's internals."""
    source = Path(mlops_dagster.component.__file__).read_text()
    modules = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlops_dagster.spec")
    }
    assert modules <= {"mlops_dagster.spec", "mlops_dagster.spec.models"}, modules

"""load_specs: YAML parsing, schema and cross-file checks; every error names file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec import load_specs

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pipelines"

# Line numbers below are those of this text; edits replace text in place and keep them stable.
PIPELINE = """\
name: churn
description: test pipeline
dataset:
  source:
    uri: data/churn.parquet
  partitions:
    daily:
      start: "2026-01-01"
      end: "2026-07-01"
  entity: customer_id
  timestamp: event_time
  label: churned
features: [activity]
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 50}
  metric: roc_auc
  holdout: 0.2
gates:
  min: {roc_auc: 0.5}
  max_regression: 0.01
monitoring:
  drift:
    max_drifted_share: 0.3
    cooldown: 6h
"""

GROUPS = """\
feature_groups:
  - name: activity
    inputs: [churn]
    transform: my_transforms:activity
    entity: customer_id
    timestamp: event_time
    consumers: [churn]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once in the base spec"
    return text.replace(old, new)


def load_issues(*paths: Path) -> list[SpecIssue]:
    with pytest.raises(SpecError) as info:
        load_specs(*paths)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def one_issue(*paths: Path) -> SpecIssue:
    issues = load_issues(*paths)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def where(issue: SpecIssue) -> tuple[str, int | None, str]:
    return issue.file, issue.line, issue.field


# --- the demo project and the valid base -----------------------------------------------------------


def test_demo_specs_load():
    specs = load_specs(DEMO)
    assert sorted(s.name for s in specs) == ["churn", "demand"]
    for spec in specs:
        assert [g.name for g in spec.feature_groups] == ["customer_activity"]
        assert spec.source_file == (DEMO / f"{spec.name}.yaml").resolve()
        assert spec.feature_groups[0].source_file == (DEMO / "features.yaml").resolve()


def test_demo_specs_load_from_files_as_well_as_folders():
    files = [DEMO / "churn.yaml", DEMO / "demand.yaml", DEMO / "features.yaml"]
    assert sorted(s.name for s in load_specs(*files)) == ["churn", "demand"]


def test_base_spec_loads(tmp_path):
    write(tmp_path, "churn.yaml", PIPELINE)
    write(tmp_path, "groups/features.yml", GROUPS)  # sub-folders and .yml are read too
    write(tmp_path, "README.md", "not a spec: [")
    (spec,) = load_specs(tmp_path)
    assert spec.name == "churn"
    assert spec.base_dir == tmp_path.resolve()
    assert spec.dataset.partitions.daily.start == date(2026, 1, 1)
    assert spec.monitoring.drift.cooldown == timedelta(hours=6)
    assert [g.name for g in spec.feature_groups] == ["activity"]


@pytest.mark.parametrize(
    "source",
    [
        "uri: s3://bucket/churn/{partition}.csv",
        "sql: select * from read_parquet('x.parquet')",
        "python: my_feeds:load_churn",
        "uri: data/churn.parquet?version=2",
    ],
)
def test_each_source_kind_loads(tmp_path, source):
    write(tmp_path, "p.yaml", edit(PIPELINE, "uri: data/churn.parquet", source))
    write(tmp_path, "g.yaml", GROUPS)
    (spec,) = load_specs(tmp_path)
    assert spec.dataset.source.kind == source.split(":")[0]


def test_missing_path_is_a_spec_error(tmp_path):
    issue = one_issue(tmp_path / "nope.yaml")
    assert where(issue) == (str(tmp_path / "nope.yaml"), None, "")
    assert "no such file" in issue.message


# --- YAML that does not parse, or is not a spec --------------------------------------------------


@pytest.mark.parametrize(
    "text, line",
    [
        pytest.param("name: churn\nmodel:\n    task: regression\n  metric: r2\n", 4, id="indentation"),
        pytest.param(
            "name: churn\nfeatures: [activity, other\nmodel:\n  task: regression\n", 3, id="unclosed-bracket"
        ),
        pytest.param("name: churn\nmodel: {task: regression\ngates: {}\n", 3, id="unclosed-brace"),
        pytest.param("name: churn\nmodel:\n\ttask: regression\n", 3, id="tab"),
    ],
)
def test_malformed_yaml_reports_the_line(tmp_path, text, line):
    path = write(tmp_path, "bad.yaml", text)
    issue = one_issue(path)
    assert where(issue) == (str(path), line, "")
    assert issue.message.startswith("malformed YAML: ")
    assert str(issue).startswith(f"{path}:{line}: malformed YAML")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, "empty.yaml", text)
    issue = one_issue(path)
    assert where(issue) == (str(path), None, "")
    assert str(issue) == f"{path}: file is empty"


@pytest.mark.parametrize("text", ["- name: churn\n- name: demand\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    path = write(tmp_path, "list.yaml", text)
    issue = one_issue(path)
    assert where(issue) == (str(path), 1, "")
    assert "expected a mapping" in issue.message


@pytest.mark.parametrize(
    "old, new, line, field",
    [
        ("name: churn\n", "name: churn\nname: churn2\n", 2, "name"),
        ("  metric: roc_auc\n", "  metric: roc_auc\n  metric: accuracy\n", 19, "model.metric"),
        (
            '      start: "2026-01-01"\n',
            '      start: "2026-01-01"\n      start: "2026-02-01"\n',
            9,
            "dataset.partitions.daily.start",
        ),
    ],
)
def test_duplicate_key(tmp_path, old, new, line, field):
    path = write(tmp_path, "p.yaml", edit(PIPELINE, old, new))
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), line, field)
    assert issue.message == "duplicate key"


# --- one field wrong ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, line, field, message",
    [
        ("description: test", "descripton: test", 2, "descripton", "unknown key"),
        (
            "    cooldown: 6h",
            "    cooldown: 6h\n    cooldown_hours: 6",
            27,
            "monitoring.drift.cooldown_hours",
            "unknown key",
        ),
        ("  holdout: 0.2", "  holdout: 0.2\n  seed: 1", 20, "model.seed", "unknown key"),
        ("params: {max_iter: 50}", "params: [max_iter, 50]", 17, "model.params", "valid dictionary"),
        ("params: {max_iter: 50}", "params: 50", 17, "model.params", "valid dictionary"),
        ("max_regression: 0.01", "max_regression: -0.1", 22, "gates.max_regression", "greater than or equal"),
        ("holdout: 0.2", "holdout: 1.5", 19, "model.holdout", "less than 1"),
        ("cooldown: 6h", "cooldown: soon", 26, "monitoring.drift.cooldown", "expected a duration"),
        (
            "max_drifted_share: 0.3",
            "max_drifted_share: 1.5",
            25,
            "monitoring.drift.max_drifted_share",
            "less than or equal to 1",
        ),
        ("min: {roc_auc: 0.5}", "min: {roc_auc: high}", 21, "gates.min.roc_auc", "valid number"),
        (
            "    cooldown: 6h\n",
            "    cooldown: 6h\nserving:\n  targets: [cloud]\n  cloud_runtime: tensorrt\n",
            29,
            "serving.cloud_runtime",
            "'auto', 'onnx' or 'sklearn'",
        ),
        (
            "    cooldown: 6h\n",
            "    cooldown: 6h\nserving:\n  targets: [edge]\n  parity:\n    label_agreement: 1.5\n",
            30,
            "serving.parity.label_agreement",
            "less than or equal to 1",
        ),
        (
            "    cooldown: 6h\n",
            "    cooldown: 6h\nserving:\n  targets: [edge]\n  parity: {rtol: 1e-3, atol: 0.1}\n",
            29,
            "serving.parity.atol",
            "unknown key",
        ),
        (
            "    cooldown: 6h\n",
            "    cooldown: 6h\nserving:\n  targets: [cloud]\n  workers: 0\n",
            29,
            "serving.workers",
            "greater than or equal to 1",
        ),
        ("task: classification", "task: clustering", 15, "model.task", "'classification' or 'regression'"),
        ("features: [activity]", "features: activity", 13, "features", "valid list"),
        ("name: churn", "name: Churn-1", 1, "name", "should match pattern"),
        ("name: churn", "name: 1churn", 1, "name", "should match pattern"),
        ("  label: churned\n", "", 3, "dataset.label", "required field is missing"),
        ("  source:\n    uri: data/churn.parquet\n", "", 3, "dataset.source", "required field is missing"),
        (
            "    uri: data/churn.parquet",
            "    uri: data/churn.parquet\n    sql: select 1",
            4,
            "dataset.source",
            "give exactly one of uri, sql, python (got ['uri', 'sql'])",
        ),
        (
            "    uri: data/churn.parquet",
            "    sql: select 1\n    python: my_feeds:load",
            4,
            "dataset.source",
            "give exactly one of uri, sql, python (got ['sql', 'python'])",
        ),
        (
            "  source:\n    uri: data/churn.parquet",
            "  source: {}",
            4,
            "dataset.source",
            "give exactly one of uri, sql, python (got none)",
        ),
        (
            "uri: data/churn.parquet",
            "uri: data/churn.json",
            5,
            "dataset.source.uri",
            "must end in .parquet or .csv",
        ),
        ("uri: data/churn.parquet", "python: not a path", 5, "dataset.source.python", "should match pattern"),
        ('end: "2026-07-01"', 'end: "2025-12-31"', 9, "dataset.partitions.daily.end", "must be after start"),
        ('end: "2026-07-01"', 'end: "2026-01-01"', 9, "dataset.partitions.daily.end", "must be after start"),
        ('start: "2026-01-01"', 'start: "someday"', 8, "dataset.partitions.daily.start", "valid date"),
        ("label: churned", "label: customer_id", 12, "dataset.label", "label and entity must be different"),
        (
            "timestamp: event_time",
            "timestamp: customer_id",
            11,
            "dataset.timestamp",
            "timestamp and entity must be different",
        ),
    ],
)
def test_pipeline_field_errors(tmp_path, old, new, line, field, message):
    path = write(tmp_path, "p.yaml", edit(PIPELINE, old, new))
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), line, field)
    assert message in issue.message
    assert str(issue).startswith(f"{path}:{line} {field}: ")


def test_misspelled_nested_key_reports_unknown_and_missing(tmp_path):
    path = write(tmp_path, "p.yaml", edit(PIPELINE, "  estimator:", "  estimater:"))
    write(tmp_path, "g.yaml", GROUPS)
    issues = load_issues(tmp_path)
    assert {(i.line, i.field, i.message) for i in issues} == {
        (16, "model.estimater", "unknown key"),
        (14, "model.estimator", "required field is missing"),
    }
    assert all(i.file == str(path) for i in issues)


@pytest.mark.parametrize(
    "old, new, line, field, message",
    [
        ("name: activity", "name: Activity", 2, "feature_groups[0].name", "should match pattern"),
        ("inputs: [churn]", "inputs: []", 3, "feature_groups[0].inputs", "at least 1 item"),
        (
            "consumers: [churn]\n",
            "consumers: [churn]\n    colums: [a]\n",
            8,
            "feature_groups[0].colums",
            "unknown key",
        ),
        ("    entity: customer_id\n", "", 2, "feature_groups[0].entity", "required field is missing"),
    ],
)
def test_feature_group_field_errors(tmp_path, old, new, line, field, message):
    path = write(tmp_path, "g.yaml", edit(GROUPS, old, new))
    issue = one_issue(path)
    assert where(issue) == (str(path), line, field)
    assert message in issue.message


# --- checks across files -----------------------------------------------------------------------------


def test_unknown_feature_group(tmp_path):
    path = write(tmp_path, "p.yaml", edit(PIPELINE, "[activity]", "[activity, nope]"))
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 13, "features[1]")
    assert issue.message == "unknown feature group 'nope' (known: activity)"


def test_feature_group_without_any_group_file(tmp_path):
    path = write(tmp_path, "p.yaml", PIPELINE)
    issue = one_issue(path)
    assert where(issue) == (str(path), 13, "features[0]")
    assert "unknown feature group 'activity' (known: none loaded)" == issue.message


def test_pipeline_not_listed_as_consumer(tmp_path):
    path = write(tmp_path, "p.yaml", PIPELINE)
    groups = write(tmp_path, "g.yaml", edit(GROUPS, "consumers: [churn]", "consumers: [demand]"))
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 13, "features[0]")
    assert "'activity' does not list 'churn' in its consumers" in issue.message
    assert f"({groups}:7)" in issue.message


def test_duplicate_pipeline_names_across_files(tmp_path):
    first = write(tmp_path, "a.yaml", PIPELINE)
    second = write(tmp_path, "b.yaml", edit(PIPELINE, "description: test", "description: copy"))
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(second), 1, "name")
    assert issue.message == f"duplicate pipeline name 'churn' (first declared in {first}:1)"


def test_duplicate_pipeline_first_file_is_the_first_given(tmp_path):
    a = write(tmp_path, "a.yaml", PIPELINE)
    b = write(tmp_path, "b.yaml", PIPELINE)
    g = write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(b, a, g)
    assert where(issue) == (str(a), 1, "name")
    assert f"first declared in {b}:1" in issue.message


def test_duplicate_feature_groups_across_files(tmp_path):
    write(tmp_path, "p.yaml", PIPELINE)
    first = write(tmp_path, "g.yaml", GROUPS)
    second = write(tmp_path, "h.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(second), 2, "feature_groups[0].name")
    assert issue.message == f"duplicate feature group 'activity' (first declared in {first}:2)"


def test_duplicate_feature_groups_in_one_file(tmp_path):
    write(tmp_path, "p.yaml", PIPELINE)
    path = write(tmp_path, "g.yaml", GROUPS + GROUPS.split("\n", 1)[1])
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 8, "feature_groups[1].name")
    assert f"first declared in {path}:2" in issue.message


def test_group_input_names_unknown_pipeline(tmp_path):
    write(tmp_path, "p.yaml", PIPELINE)
    path = write(tmp_path, "g.yaml", edit(GROUPS, "inputs: [churn]", "inputs:\n      - churn\n      - ghost"))
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 5, "feature_groups[0].inputs[1]")
    assert "unknown pipeline 'ghost'" in issue.message


def test_group_input_error_is_reported_once_for_many_consumers(tmp_path):
    write(tmp_path, "churn.yaml", PIPELINE)
    write(tmp_path, "other.yaml", edit(PIPELINE, "name: churn", "name: other"))
    groups = edit(GROUPS, "inputs: [churn]", "inputs: [churn, ghost]")
    path = write(tmp_path, "g.yaml", edit(groups, "consumers: [churn]", "consumers: [churn, other]"))
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 3, "feature_groups[0].inputs[1]")


def test_label_listed_in_feature_group_columns(tmp_path):
    write(tmp_path, "p.yaml", PIPELINE)
    path = write(tmp_path, "g.yaml", GROUPS + "    columns: [n_events, churned]\n")
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 8, "feature_groups[0].columns")
    assert issue.message == "label 'churned' of pipeline 'churn' is used as a feature"


@pytest.mark.parametrize(
    "features, line, field, message",
    [
        ("[tenure, churned]", 20, "model.features[1]", "label 'churned' is used as a feature"),
        ("\n    - tenure\n    - churned", 22, "model.features[1]", "label 'churned' is used as a feature"),
        ("[customer_id, tenure]", 20, "model.features[0]", "'customer_id' is the entity or timestamp column"),
    ],
)
def test_label_listed_in_model_features(tmp_path, features, line, field, message):
    text = edit(PIPELINE, "  holdout: 0.2\n", f"  holdout: 0.2\n  features: {features}\n")
    path = write(tmp_path, "p.yaml", text)
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), line, field)
    assert message in issue.message


# --- all issues at once ------------------------------------------------------------------------------


def test_several_issues_in_one_file_are_reported_together(tmp_path):
    text = PIPELINE
    for old, new in [
        ("name: churn", "name: Churn-1"),
        ("holdout: 0.2", "holdout: 1.5"),
        ("max_regression: 0.01", "max_regression: -1"),
        ("cooldown: 6h", "cooldown: soon"),
        ("uri: data/churn.parquet", "uri: data/churn.txt"),
        ("{max_iter: 50}", "3"),
    ]:
        text = edit(text, old, new)
    path = write(tmp_path, "p.yaml", text)
    write(tmp_path, "g.yaml", GROUPS)
    issues = load_issues(tmp_path)
    assert sorted((i.line, i.field) for i in issues) == [
        (1, "name"),
        (5, "dataset.source.uri"),
        (17, "model.params"),
        (19, "model.holdout"),
        (22, "gates.max_regression"),
        (26, "monitoring.drift.cooldown"),
    ]
    assert {i.file for i in issues} == {str(path)}


def test_issues_from_several_files_are_reported_together(tmp_path):
    bad_yaml = write(tmp_path, "a.yaml", "name: a\nfeatures: [x\n")
    bad_field = write(tmp_path, "b.yaml", edit(PIPELINE, "holdout: 0.2", "holdout: 0"))
    bad_group = write(tmp_path, "g.yaml", edit(GROUPS, "    entity: customer_id\n", "    entity: [a]\n"))
    empty = write(tmp_path, "z.yaml", "")
    issues = load_issues(tmp_path)
    got = {(i.file, i.line, i.field) for i in issues}
    assert {
        (str(bad_yaml), 3, ""),
        (str(bad_field), 19, "model.holdout"),
        (str(bad_group), 5, "feature_groups[0].entity"),
        (str(empty), None, ""),
    } <= got


# --- loading imports nothing heavy ------------------------------------------------------------------


def test_loading_specs_imports_no_ml_library():
    code = textwrap.dedent(
        f"""
        import json, sys
        import mlops_dagster.spec
        specs = mlops_dagster.spec.load_specs({str(DEMO)!r})
        heavy = ["sklearn", "evidently", "great_expectations", "bentoml", "onnx", "onnxruntime", "assets"]
        print(json.dumps({{"specs": len(specs), "loaded": [m for m in heavy if m in sys.modules]}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"specs": 2, "loaded": []}

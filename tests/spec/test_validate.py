"""validate_deep: estimators, params, scorers, transforms and sources resolve, or fail with file:line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec import PipelineSpec, load_specs, validate_deep

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pipelines"
TRANSFORMS = "spec_test_transforms"  # a module written into tmp_path by the `transforms` fixture

# Line numbers below are those of this text; edits replace text in place and keep them stable.
PIPELINE = """\
name: churn
dataset:
  source:
    uri: data/churn.parquet
  entity: customer_id
  timestamp: event_time
  label: churned
features: [activity]
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 50}
  metric: roc_auc
gates:
  min: {roc_auc: 0.5, accuracy: 0.5}
  max_regression: 0.01
monitoring:
  performance: {metric: roc_auc, min: 0.5}
"""

GROUPS = f"""\
feature_groups:
  - name: activity
    inputs: [churn]
    transform: {TRANSFORMS}:activity
    entity: customer_id
    timestamp: event_time
    consumers: [churn, other]
"""


@pytest.fixture(autouse=True)
def transforms(tmp_path, monkeypatch):
    """An importable module with a transform, a loader and a non-callable attribute."""
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / f"{TRANSFORMS}.py").write_text(
        "def activity(df):\n    return df\n\ndef load(context):\n    return None\n\nnot_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mod"))
    sys.modules.pop(TRANSFORMS, None)
    yield
    sys.modules.pop(TRANSFORMS, None)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once in the base spec"
    return text.replace(old, new)


def deep_issues(*paths: Path) -> list[SpecIssue]:
    specs = load_specs(*paths)  # the specs themselves load: only the deep check fails
    with pytest.raises(SpecError) as info:
        validate_deep(specs)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def one_issue(*paths: Path) -> SpecIssue:
    issues = deep_issues(*paths)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def where(issue: SpecIssue) -> tuple[str, int | None, str]:
    return issue.file, issue.line, issue.field


def pipeline_error(tmp_path: Path, old: str, new: str) -> tuple[Path, SpecIssue]:
    path = write(tmp_path, "p.yaml", edit(PIPELINE, old, new))
    write(tmp_path, "g.yaml", GROUPS)
    return path, one_issue(tmp_path)


# --- what passes ---------------------------------------------------------------------------------------


def test_demo_specs_validate_deep():
    pytest.importorskip("assets.feed")  # the demo's own code is written separately
    pytest.importorskip("assets.features")
    validate_deep(load_specs(DEMO))


def test_base_spec_validates(tmp_path):
    write(tmp_path, "p.yaml", PIPELINE)
    write(tmp_path, "g.yaml", GROUPS)
    assert validate_deep(load_specs(tmp_path)) is None


REGRESSION = [
    ("task: classification", "task: regression"),
    ("sklearn.linear_model.LogisticRegression", "sklearn.linear_model.Ridge"),
    ("params: {max_iter: 50}", "params: {alpha: 1.0}"),
    ("  metric: roc_auc", "  metric: r2"),
    ("min: {roc_auc: 0.5, accuracy: 0.5}", "min: {r2: 0.1, neg_mean_absolute_error: -5}"),
    ("{metric: roc_auc", "{metric: r2"),
]


@pytest.mark.parametrize(
    "edits",
    [
        [("sklearn.linear_model.LogisticRegression", "sklearn.linear_model:LogisticRegression")],
        [("sklearn.linear_model.LogisticRegression", "sklearn.ensemble.HistGradientBoostingClassifier")],
        REGRESSION,
        [("uri: data/churn.parquet", f"python: {TRANSFORMS}:load")],
    ],
    ids=["colon-path", "other-classifier", "regression", "python-source"],
)
def test_valid_variants_validate(tmp_path, edits):
    text = PIPELINE
    for old, new in edits:
        text = edit(text, old, new)
    write(tmp_path, "p.yaml", text)
    write(tmp_path, "g.yaml", GROUPS)
    validate_deep(load_specs(tmp_path))


# --- the estimator ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator, reason",
    [
        ("sklearn.ensemble.NoSuchModel", "module 'sklearn.ensemble' has no attribute 'NoSuchModel'"),
        ("nosuchpkg.Model", "No module named 'nosuchpkg'"),
        ("nosuchpkg.sub:Model", "No module named 'nosuchpkg'"),
        ("sklearn.no_such_module.Model", "No module named 'sklearn.no_such_module'"),
    ],
)
def test_estimator_cannot_be_imported(tmp_path, estimator, reason):
    path, issue = pipeline_error(tmp_path, "sklearn.linear_model.LogisticRegression", estimator)
    assert where(issue) == (str(path), 11, "model.estimator")
    assert issue.message.startswith(f"cannot import {estimator!r}")
    assert reason in issue.message
    assert str(issue).startswith(f"{path}:11 model.estimator: cannot import {estimator!r}")


def test_estimator_that_is_not_an_estimator_class(tmp_path):
    path, issue = pipeline_error(tmp_path, "linear_model.LogisticRegression", "metrics.accuracy_score")
    assert where(issue) == (str(path), 11, "model.estimator")
    assert "is not an estimator class" in issue.message


def test_classifier_used_for_regression(tmp_path):
    path = write(
        tmp_path,
        "p.yaml",
        edit(
            edit(
                edit(PIPELINE, "task: classification", "task: regression"),
                "min: {roc_auc: 0.5, accuracy: 0.5}",
                "min: {r2: 0.1}",
            ),
            "{metric: roc_auc",
            "{metric: r2",
        ),
    )
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 11, "model.estimator")
    assert issue.message == "sklearn.linear_model.LogisticRegression is not a regressor"


def test_regressor_used_for_classification(tmp_path):
    path, issue = pipeline_error(tmp_path, "LogisticRegression", "Ridge")
    assert where(issue) == (str(path), 11, "model.estimator")
    assert issue.message == "sklearn.linear_model.Ridge is not a classifier"


@pytest.mark.parametrize(
    "params, bad",
    [("{max_iter: 50, n_trees: 3}", "n_trees"), ("{max_itr: 50}", "max_itr")],
)
def test_unknown_estimator_kwarg(tmp_path, params, bad):
    path, issue = pipeline_error(tmp_path, "params: {max_iter: 50}", f"params: {params}")
    assert where(issue) == (str(path), 12, "model.params")
    assert issue.message.startswith("sklearn.linear_model.LogisticRegression: ")
    assert f"unexpected keyword argument '{bad}'" in issue.message


# --- scorers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, line, field, scorer",
    [
        ("  metric: roc_auc", "  metric: roc_auk", 13, "model.metric", "roc_auk"),
        ("  metric: roc_auc", "  metric: accuracy_score", 13, "model.metric", "accuracy_score"),
        ("accuracy: 0.5}", "acuracy: 0.5}", 15, "gates.min.acuracy", "acuracy"),
        (
            "{metric: roc_auc, min: 0.5}",
            "{metric: auc_roc, min: 0.5}",
            18,
            "monitoring.performance.metric",
            "auc_roc",
        ),
    ],
)
def test_unknown_scorer(tmp_path, old, new, line, field, scorer):
    path, issue = pipeline_error(tmp_path, old, new)
    assert where(issue) == (str(path), line, field)
    assert issue.message.startswith(f"unknown sklearn scorer {scorer!r}")


def test_gates_min_on_a_multiline_mapping_points_at_the_metric(tmp_path):
    path, issue = pipeline_error(
        tmp_path, "  min: {roc_auc: 0.5, accuracy: 0.5}", "  min:\n    roc_auc: 0.5\n    f1_scor: 0.5"
    )
    assert where(issue) == (str(path), 17, "gates.min.f1_scor")


# --- transforms and python sources ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform, message",
    [
        (f"{TRANSFORMS}:nope", f"cannot import '{TRANSFORMS}:nope': module '{TRANSFORMS}' has no attribute"),
        ("no_such_module:activity", "cannot import 'no_such_module:activity': No module named 'no_such_m"),
        ("no_such_pkg.features.activity", "cannot import 'no_such_pkg.features.activity': No module named"),
        (f"{TRANSFORMS}:not_callable", f"'{TRANSFORMS}:not_callable' is not callable"),
    ],
)
def test_transform_cannot_be_imported(tmp_path, transform, message):
    write(tmp_path, "p.yaml", PIPELINE)
    path = write(tmp_path, "g.yaml", edit(GROUPS, f"{TRANSFORMS}:activity", transform))
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 4, "feature_groups[0].transform")
    assert issue.message.startswith(message)


def test_shared_transform_is_reported_once(tmp_path):
    write(tmp_path, "churn.yaml", PIPELINE)
    write(tmp_path, "other.yaml", edit(PIPELINE, "name: churn", "name: other"))
    path = write(tmp_path, "g.yaml", edit(GROUPS, f"{TRANSFORMS}:activity", f"{TRANSFORMS}:nope"))
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 4, "feature_groups[0].transform")


def test_python_source_cannot_be_imported(tmp_path):
    path, issue = pipeline_error(tmp_path, "uri: data/churn.parquet", f"python: {TRANSFORMS}:load_nothing")
    assert where(issue) == (str(path), 4, "dataset.source.python")
    assert issue.message.startswith(f"cannot import '{TRANSFORMS}:load_nothing'")


# --- all issues at once, and specs not read from YAML ---------------------------------------------------


def test_all_deep_issues_are_reported_together(tmp_path):
    text = PIPELINE
    for old, new in [
        ("sklearn.linear_model.LogisticRegression", "nosuchpkg.Model"),
        ("  metric: roc_auc", "  metric: roc_auk"),
        ("accuracy: 0.5}", "acuracy: 0.5}"),
    ]:
        text = edit(text, old, new)
    path = write(tmp_path, "p.yaml", text)
    groups = write(tmp_path, "g.yaml", edit(GROUPS, f"{TRANSFORMS}:activity", "no_such_module:activity"))
    issues = deep_issues(tmp_path)
    assert sorted((i.file, i.line, i.field) for i in issues) == sorted(
        [
            (str(path), 11, "model.estimator"),
            (str(path), 13, "model.metric"),
            (str(path), 15, "gates.min.acuracy"),
            (str(groups), 4, "feature_groups[0].transform"),
        ]
    )


def test_spec_built_in_python_names_the_pipeline():
    spec = PipelineSpec.model_validate(
        {
            "name": "churn",
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
            "model": {"task": "classification", "estimator": "nosuchpkg.Model", "metric": "roc_auc"},
        }
    )
    with pytest.raises(SpecError) as info:
        validate_deep([spec])
    (issue,) = info.value.issues
    assert where(issue) == ("<spec churn>", None, "model.estimator")
    assert str(issue).startswith("<spec churn> model.estimator: cannot import 'nosuchpkg.Model'")
